"""What ends a run early with a named reason instead of a wrong result: a loss or gradient that is no longer
a finite number (`NonFiniteLoss`), and a full disk (`DiskFull`).

A NaN used to train on silently: the Trainer's default skips non-finite losses in its logs, the optimiser
turned every adapter value into NaN, and the run ended "completed" with a useless adapter. Now the
gradients are looked at before every optimiser step, so the step that would poison the weights never
happens, and the weights are checked once more before the adapter is saved.

A full disk used to leave a half-written checkpoint (which a resume would then trip over) and a
traceback. Now the partial checkpoint is removed, the last whole one stays, and the run says DiskFull
with the free space found, even when status.json itself can no longer be replaced.
"""
from __future__ import annotations

import json
import math
import re
import shutil
import sys
import time
import traceback
from contextlib import contextmanager
from pathlib import Path

import torch
from transformers import TrainerCallback

from core.runtime.disk import disk_full, is_disk_full

CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
ADVICE = "lower train.learning_rate, keep train.max_grad_norm on (e.g. 1.0), or use fp32 precision"


class NonFiniteLoss(RuntimeError):
    """The loss or the gradients stopped being finite numbers; the message names the step."""


def gradient_norm(model) -> float:
    """The total 2-norm of the gradients about to be applied (NaN or inf when any of them is)."""
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    if not grads:
        return 0.0
    return float(torch.nn.utils.get_total_norm(grads, norm_type=2.0))


def non_finite_parameter(model) -> str | None:
    """The name of the first trainable parameter holding NaN or infinity, or None."""
    for name, param in model.named_parameters():
        if param.requires_grad and not bool(torch.isfinite(param).all()):
            return name
    return None


class RunGuard(TrainerCallback):
    """Stops training at the first non-finite gradient or logged loss, and remembers which checkpoints
    were saved whole, so a partial one can be told apart after a failure."""

    def __init__(self, step_norm=None):
        self.last_whole_checkpoint = 0  # the step of the last checkpoint this process finished saving
        # `step_norm()`: the gradient norm the Trainer formed for this step (clipping and its log need it), so
        # it is not formed twice (about 27 ms of each 2 s step of the bundled model's peer job on a 2-core CPU)
        self.step_norm = step_norm

    def on_train_begin(self, args, state, control, **kwargs):
        self.last_whole_checkpoint = state.global_step  # a resumed run's earlier checkpoints are whole

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        norm = self.step_norm() if self.step_norm is not None else None
        if norm is None:
            norm = gradient_norm(model) if model is not None else 0.0
        norm = float(norm)
        if not math.isfinite(norm):
            raise NonFiniteLoss(f"step {state.global_step + 1}: the gradient norm is {norm}, so the loss or the "
                                f"gradients overflowed; the step was not applied and no adapter was saved; {ADVICE}")

    def on_log(self, args, state, control, logs=None, **kwargs):
        for key in ("loss", "grad_norm", "eval_loss"):
            value = (logs or {}).get(key)
            if isinstance(value, (int, float)) and not math.isfinite(value):
                raise NonFiniteLoss(f"step {state.global_step}: {key} is {value}; no adapter was saved; {ADVICE}")

    def on_save(self, args, state, control, **kwargs):
        self.last_whole_checkpoint = state.global_step

    def remove_partial_checkpoints(self, checkpoints_dir: Path) -> list[str]:
        """Delete checkpoint folders begun after the last whole save (an interrupted one); return their names."""
        removed = []
        for folder in Path(checkpoints_dir).glob("checkpoint-*"):
            match = CHECKPOINT.match(folder.name)
            if match and int(match.group(1)) > self.last_whole_checkpoint:
                shutil.rmtree(folder, ignore_errors=True)
                removed.append(folder.name)
        return removed


def check_weights(model, step: int) -> None:
    """Refuse to save an adapter holding NaN or infinity."""
    name = non_finite_parameter(model)
    if name:
        raise NonFiniteLoss(f"step {step}: the trained weight {name} holds NaN or infinity, so the adapter was "
                            f"not saved; {ADVICE}")


@contextmanager
def disk_full_named(run_path: Path, guard: RunGuard, doing: str = "training"):
    """Turn "no space left" raised anywhere inside (a checkpoint, a metrics line, a log print) into DiskFull,
    after removing the checkpoint that was being written, so the last whole one is what a resume finds."""
    try:
        yield
    except BaseException as err:
        if not is_disk_full(err):
            raise
        guard.remove_partial_checkpoints(Path(run_path) / "checkpoints")
        raise disk_full(Path(run_path), doing) from None


def _say(text: str) -> None:
    """Write to train.log if it can still be written (on a full disk it cannot; that must not hide the verdict)."""
    try:
        print(text, file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass


def write_status_anyway(run, **changes) -> bool:
    """Merge `changes` into status.json; when the disk is too full for the usual temp-and-rename, overwrite
    the file in place (it fits in the blocks it already has). False when neither worked."""
    try:
        run.write_status(**changes)
        return True
    except OSError:
        pass
    try:
        text = json.dumps({**run.raw_status(), **changes}, indent=1)
        with open(run.status_file, "r+", encoding="utf-8") as fh:
            fh.write(text)
            fh.truncate()
        return True
    except OSError as err:
        _say(f"[workbench] could not record the run's end in status.json: {err}")
        return False


def report_failure(run, err: BaseException) -> int:
    """Record a failed run (kind and message) even on a full disk; return the trainer's exit code."""
    _say("".join(traceback.format_exception(err)))
    write_status_anyway(run, state="failed", ended_at=time.time(),
                        error={"kind": type(err).__name__, "message": str(err)[:2000]})
    return 1
