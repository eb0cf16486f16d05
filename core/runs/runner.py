"""Start, watch and stop trainer processes.

The trainer runs detached (its own session) with its output going straight to
train.log, never through a pipe, so it keeps training whether or not anybody
is watching, and survives the UI being closed or restarted.

One trainer per workspace: starting checks for an active run and creates the new
one under a lock on a file in the workspace, so two Starts at once (two browsers,
two terminals, or one of each) make one run and one RunnerBusy.
"""
from __future__ import annotations

import sys
from pathlib import Path

from core.runs.folder import RunFolder, active_run, new_run_folder, write_atomic
from core.runs.job_folder import file_lock
from core.runs.launch import LaunchError, launch
from core.spec import JobSpec, dump_spec

__all__ = ["LaunchError", "RunnerBusy", "failure_report", "start", "stop", "wait"]


class RunnerBusy(RuntimeError):
    """A job is already running in this workspace."""


def start_lock_file(workspace: Path) -> Path:
    # Beside runs/, not in it: runs/ holds run folders and nothing else.
    return Path(workspace) / ".start.lock"


def start(spec: JobSpec, workspace: Path) -> RunFolder:
    """Write the run folder and launch the trainer; the spec must already be validated.

    Raises RunnerBusy (naming the active run) or LaunchError (the run is then marked failed)."""
    with file_lock(start_lock_file(workspace)):
        busy = active_run(workspace)
        if busy is not None:
            raise RunnerBusy(f"run {busy.run_id} is still {busy.status()['state']}; stop it or wait for it to finish")
        run = new_run_folder(workspace, spec.method)
        write_atomic(run.job, dump_spec(spec))
        run.write_status(state="queued", pid=None)
        # Launched under the lock too, so the next start sees this run with its trainer's pid.
        launch(trainer_module(spec), [run.job], run.log_file, job=run)
    return run


def trainer_module(spec: JobSpec) -> str:
    """The process a run starts: the trainer itself, or for several processes (and FSDP/DeepSpeed) the group
    launcher that runs `accelerate launch` with the trainer and watches its ranks as one."""
    from core.runtime.layout import in_group

    return "core.training.group" if in_group(spec) else "core.training.trainer"


def stop(run: RunFolder) -> None:
    """Ask the trainer to stop after the current step and save what it has."""
    run.request_stop()


def wait(run: RunFolder, on_tick=None, poll_s: float = 0.5, stop_on_interrupt: bool = False) -> dict:
    """Block until the run ends; `on_tick(status)` is called at every poll.

    With `stop_on_interrupt`, Ctrl-C asks the trainer to stop and save, then keeps waiting,
    so a terminal user never leaves an orphaned trainer or loses the steps already done.
    """
    try:
        return run.wait(on_tick, poll_s)
    except KeyboardInterrupt:
        if not stop_on_interrupt:
            raise
        print("\nstopping after the current step...", file=sys.stderr)
        stop(run)
        return wait(run, poll_s=poll_s)


def failure_report(run: RunFolder, status: dict) -> str:
    """What a terminal user needs when a run did not complete: the error and the end of its log."""
    error = status.get("error") or {}
    return (f"error: the run ended {status['state']} ({error.get('kind')}): {error.get('message')}\n"
            f"--- end of train.log ---\n{run.log_tail(3000)}")
