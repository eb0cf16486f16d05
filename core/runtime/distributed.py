"""What one training process knows of its place among several, and the few things they must do together.

A trainer started by accelerate's launcher (torchrun underneath) is one rank of a group: torchrun gives it
RANK, LOCAL_RANK and WORLD_SIZE, and TORCHELASTIC_RUN_ID, which only its workers have. A plain trainer has
none of these and is rank 0 of a world of one. (A Kubernetes pod may carry RANK for the pod itself, so RANK
alone does not say that this process is a worker.)

Only rank 0 writes the run folder (metrics, status steps, adapter); the other ranks train and print to
their node's train.log, where the launcher prefixes every line with the rank.
"""
from __future__ import annotations

import ctypes
import json
import os
import signal
import time
import traceback


def in_group() -> bool:
    return "TORCHELASTIC_RUN_ID" in os.environ


def rank() -> int:
    return int(os.environ.get("RANK", 0)) if in_group() else 0


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", 0)) if in_group() else 0


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", 1)) if in_group() else 1


def is_main_process() -> bool:
    return rank() == 0


def claim_gpus(ids: list[int] | None) -> None:
    """Show a plain (one-process) trainer only the GPUs its job names, numbered as nvidia-smi numbers them.
    Under the launcher accelerate does this from the config's gpu_ids. Must run before CUDA starts."""
    os.environ.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
    if ids and not in_group():
        os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, ids))


def end_with_launcher() -> None:
    """Ask the kernel to end this worker when its launcher dies, however it dies (even SIGKILL, which the
    launcher cannot pass on): torchrun starts each worker in a session of its own, so ending the launcher's
    process group alone would leave the workers training."""
    if not in_group():
        return
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
    except OSError:
        return  # not Linux: the launcher still ends its workers on SIGTERM
    if os.getppid() == 1:  # the launcher died before the request was in place
        os.kill(os.getpid(), signal.SIGTERM)


def agree(flag: bool) -> bool:
    """True on every rank when `flag` is true on any: a stop request seen by one rank stops them all at the
    same step (a rank that stopped alone would leave the others waiting in the next gradient exchange).
    Every rank must call it at the same point; without a process group it returns `flag`."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return flag
    backend = str(dist.get_backend())
    device = torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" else torch.device("cpu")
    value = torch.tensor([1 if flag else 0], dtype=torch.int32, device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def record_failure(err: BaseException) -> None:
    """Leave this rank's error where the launcher reads it (torchrun's per-worker error file, in the layout
    of torch's own ErrorHandler), with the time to the millisecond so the launcher can tell which rank
    failed first (torch keeps whole seconds)."""
    path = os.environ.get("TORCHELASTIC_ERROR_FILE")
    if not path:
        return
    now = time.time()
    data = {"message": {"message": f"{type(err).__name__}: {err}",
                        "extraInfo": {"py_callstack": traceback.format_exc(), "timestamp": str(int(now)),
                                      "failed_at": now}}}
    try:
        with open(path, "w") as fh:
            json.dump(data, fh)
    except OSError:
        pass  # the launcher then names the rank and its exit code


class RowCounter:
    """Counts the rows and tokens this rank trained on, so each rank's log can show its share of the data (the
    Trainer reports only totals gathered over all ranks). It counts the training forwards of the model, not
    the batches the data loader hands out: accelerate's loader reads one batch ahead, which a stopped run
    never trains on."""

    def __init__(self):
        self.rows = self.batches = self.tokens = 0

    @classmethod
    def attach(cls, model) -> RowCounter:
        counter = cls()
        model.register_forward_pre_hook(counter._count, with_kwargs=True)
        return counter

    def _count(self, module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        if not module.training or ids is None:
            return None  # evaluation forwards are not training
        mask = kwargs.get("attention_mask")
        self.rows += ids.shape[0] if mask is not None or "position_ids" not in kwargs else self._samples(kwargs)
        self.batches += 1
        self.tokens += int(mask.sum()) if mask is not None else ids.numel()
        return None

    @staticmethod
    def _samples(kwargs) -> int:
        """Rows laid end to end in one padding-free row: each sample's positions restart at 0."""
        return int((kwargs["position_ids"] == 0).sum())

    def line(self) -> str:
        return (f"[workbench] rank {rank()} of {world_size()} trained on {self.rows} rows "
                f"({self.tokens} tokens) in {self.batches} batches")
