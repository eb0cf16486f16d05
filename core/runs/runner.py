"""Start, watch and stop trainer processes.

The trainer runs detached (its own session) with its output going straight to
train.log, never through a pipe, so it keeps training whether or not anybody
is watching, and survives the UI being closed or restarted.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from core.paths import PROJECT_ROOT
from core.runs.folder import FINAL_STATES, RunFolder, active_run, new_run_folder, poll_until_final, write_atomic
from core.spec import JobSpec, dump_spec


class RunnerBusy(RuntimeError):
    """A job is already running in this workspace."""


def start(spec: JobSpec, workspace: Path) -> RunFolder:
    """Write the run folder and launch the trainer; the spec must already be validated."""
    busy = active_run(workspace)
    if busy is not None:
        raise RunnerBusy(f"run {busy.run_id} is still {busy.status()['state']}; stop it or wait for it to finish")
    run = new_run_folder(workspace, spec.method)
    write_atomic(run.job, dump_spec(spec))
    run.write_status(state="queued", pid=None)
    env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=str(PROJECT_ROOT))
    try:
        with open(run.log_file, "ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "core.training.trainer", str(run.job)],
                cwd=PROJECT_ROOT,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=env,
            )
    except OSError as err:
        # A "queued" run with no pid would read as active forever and block every later start.
        run.write_status(state="failed", ended_at=time.time(), error={"kind": type(err).__name__, "message": str(err)})
        raise
    # The trainer writes its own pid too; writing it here closes the gap before it starts.
    # Only the pid is written, under the status lock, so a "running" the trainer already wrote stays.
    run.write_status(pid=proc.pid)
    return run


def stop(run: RunFolder) -> None:
    """Ask the trainer to stop after the current step and save what it has."""
    if run.is_active():
        run.request_stop()


def wait(run: RunFolder, on_tick=None, poll_s: float = 0.5, stop_on_interrupt: bool = False) -> dict:
    """Block until the run ends; `on_tick(status)` is called at every poll.

    With `stop_on_interrupt`, Ctrl-C asks the trainer to stop and save, then keeps waiting,
    so a terminal user never leaves an orphaned trainer or loses the steps already done.
    """
    try:
        return poll_until_final(run.status, FINAL_STATES, on_tick, poll_s)
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
