"""The launcher of a group run: `python -m core.training.group RUN/job.yaml`.

The runner starts this instead of the plain trainer when runtime.strategy is not single; status.json's pid
is this process, so the died-without-reporting rule and Stop/Kill cover the whole group through it. It
writes the run's accelerate config (core/runtime/accelerate_config.py) and runs `accelerate launch` with it,
in this process (accelerate's own launch_command, the code behind the `accelerate launch` command), so that
torchrun's report of failed workers reaches it as an exception rather than as text on a terminal:

- a worker that dies ends the others (torchrun stops them) and fails the run naming the rank, its pid and
  its signal or error, within a second or two;
- SIGTERM (Kill) reaches torchrun's handler here, which ends the workers before this process exits; a
  worker whose launcher dies anyway (SIGKILL) is ended by the kernel (distributed.end_with_launcher);
- when every rank has finished, the run is completed (or stopped, if a stop was requested). Rank 0 writes
  metrics, steps and the adapter; this process alone writes the final state, so a watcher sees the run end
  once the whole group has.

On a node other than the main one the same happens for that node's ranks, in that node's run folder.
"""
from __future__ import annotations

import os
import shlex
import sys
import time
import traceback
from pathlib import Path

from core.runs.folder import RunFolder

LOG_HINT = "every line in train.log starts with its rank, e.g. [rank1]:"
# How a rank's end reads when another rank's end caused it: its connection in a collective broke.
BROKEN_CONNECTION = ("Connection closed by peer", "Connection reset by peer", "Broken pipe", "DistBackendError",
                     "NCCL communicator was aborted", "remote process exited")


def failure_error(failures: dict, node_rank: int) -> dict:
    """status.json's error for torchrun's failed workers ({global rank: ProcessFailure}): the rank that most
    likely failed first is named, the others listed after it. torchrun dates failures to the second only, and
    when one rank dies the others end within milliseconds (their next exchange breaks, or torchrun sends them
    SIGTERM), so the order is read from how each ended: a signal other than SIGTERM first (nothing in the
    group sends those), then an error of the rank's own, then SIGTERM, then a broken connection; within one
    kind, the earliest (errors the ranks recorded carry milliseconds, see distributed.record_failure)."""
    def failed_at(f) -> float:
        extra = (f.error_file_data.get("message") or {}) if isinstance(f.error_file_data, dict) else {}
        extra = extra.get("extraInfo", {}) if isinstance(extra, dict) else {}
        return float(extra.get("failed_at", f.timestamp))

    def text(f) -> str:  # the error the rank recorded ("Type: message"), or "" when it left none
        message = f.message.get("message", "") if isinstance(f.message, dict) else f.message
        return "" if f.error_file == "<N/A>" else str(message)

    def how(f) -> int:
        if f.exitcode < 0:
            return 2 if f.signal_name() == "SIGTERM" else 0
        return 3 if any(marker in text(f) for marker in BROKEN_CONNECTION) else 1

    ordered = sorted(failures.items(), key=lambda item: (how(item[1]), failed_at(item[1]), item[0]))
    rank, first = ordered[0]
    where = f"rank {rank} (node {node_rank}, pid {first.pid})"
    if first.exitcode < 0:
        kind, what = "RankFailed", f"{where} was ended by signal {first.signal_name()}"
    elif ": " in text(first):
        kind, detail = text(first).split(": ", 1)
        what = f"{where} failed: {kind}: {detail}"
    else:
        kind, what = "RankFailed", f"{where} exited with code {first.exitcode}"
    others = [str(r) for r, _ in ordered[1:]]
    if others:
        what += f"; then rank {', '.join(others)} ended too"
    return {"kind": kind, "message": f"{what}. The run's other processes were stopped; {LOG_HINT}"[:2000]}


def launch_group(run: RunFolder, spec) -> None:
    """Run accelerate's launch for this node of the job; returns when every rank here has ended well."""
    from accelerate.commands.launch import launch_command, launch_command_parser

    from core.runtime.accelerate_config import RANK_PREFIX, launch_arguments, write_config
    from core.runtime.device import pick_device
    from core.runtime.hardware import cpu_cores
    from core.runtime.layout import threads_per_process

    device = pick_device(spec.runtime.device)
    config = write_config(spec, device, run.path)
    arguments = launch_arguments(config, run.job, run.path / "ranks")
    # Read by torchrun (line prefix) and by every worker (threads, GPU numbering), which inherit them.
    os.environ["TORCHELASTIC_LOG_LINE_PREFIX_TEMPLATE"] = RANK_PREFIX
    os.environ["OMP_NUM_THREADS"] = str(threads_per_process(spec, cpu_cores()))
    os.environ.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
    print(f"[workbench] node {spec.runtime.node_rank} of {spec.runtime.nodes}: accelerate launch "
          f"{shlex.join(arguments)}", flush=True)
    launch_command(launch_command_parser().parse_args(arguments))


def main(argv: list[str]) -> int:
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    from core.spec import load_spec

    if len(argv) != 1:
        print("usage: python -m core.training.group RUN_FOLDER/job.yaml", file=sys.stderr)
        return 2
    run = RunFolder(Path(argv[0]).resolve().parent)
    run.write_status(state="running", pid=os.getpid(), started_at=time.time(), error=None)
    try:
        spec = load_spec(str(run.job))
        launch_group(run, spec)
    except ChildFailedError as err:
        run.write_status(state="failed", ended_at=time.time(), error=failure_error(err.failures, spec.runtime.node_rank))
        print(f"[workbench] failed: {run.raw_status()['error']['message']}", flush=True)
        return 1
    except SignalException as err:  # Kill: torchrun has ended the workers already
        if run.raw_status()["state"] in ("queued", "running"):
            run.write_status(state="failed", ended_at=time.time(), error={
                "kind": "Killed", "message": f"the launcher was sent {err.sigval.name}; it ended every rank"})
        return 1
    except BaseException as err:  # the launch itself failed (a bad config, a port in use): report it
        traceback.print_exc()
        run.mark_failed(err)
        return 1
    final = "stopped" if run.stop_requested() else "completed"
    run.write_status(state=final, ended_at=time.time())
    print(f"[workbench] {final}: every rank of node {spec.runtime.node_rank} ended", flush=True)
    return 0


if __name__ == "__main__":
    code = main(sys.argv[1:])
    # Everything is written and every rank has ended; skip the interpreter's teardown of torch and accelerate,
    # which takes seconds on a busy machine, so the run's processes are gone as soon as its state is final.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
