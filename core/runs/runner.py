"""Start, stop and kill trainer processes.

The runner launches the trainer's supervisor (core/runs/supervisor.py) detached, in its own session,
with its output going straight to train.log, never through a pipe; the supervisor starts the trainer
and records how it ended. So a run keeps training whether or not anybody is watching, survives the UI
being closed or restarted, and reads as failed with its reason the moment its trainer dies.

Runs whose device claims overlap never run together (core/runs/claims.py): on one machine without
explicit GPU lists that means one trainer per workspace. Starting checks and creates the run under a
lock on a file in the workspace, so two Starts at once (two browsers, two terminals, the scheduler and
a page) make one run and one RunnerBusy.
"""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from core.runs import queue, warm_start
from core.runs.claims import Claim, claims_overlap, job_file_claim, spec_claim
from core.runs.folder import SUPERVISOR_MODULE, RunFolder, list_runs, new_run_folder, write_atomic
from core.runs.job_folder import file_lock
from core.runs.launch import LaunchError
from core.runs.process_group import DEFAULT_GRACE_S
from core.runs.queue import QueueEntry
from core.spec import JobSpec, dump_spec

__all__ = ["LaunchError", "RunnerBusy", "failure_report", "kill", "start", "start_lock", "stop", "wait"]


TRAINER_MODULE = "core.training.trainer"


class RunnerBusy(RuntimeError):
    """A run whose devices overlap this job's is still active in this workspace."""


def start_lock_file(workspace: Path) -> Path:
    # Beside runs/, not in it: runs/ holds run folders and nothing else.
    return Path(workspace) / ".start.lock"


def start_lock(workspace: Path):
    """Held while a run is created or relaunched: whoever holds it sees every run with its trainer's pid,
    except one whose launcher died half-way (see launch_orphans)."""
    return file_lock(start_lock_file(workspace))


def blocking_run(workspace: Path, claim: Claim) -> RunFolder | None:
    """An active run whose claim overlaps `claim`; call under the start lock."""
    for run in list_runs(workspace):
        if run.is_active() and claims_overlap(claim, job_file_claim(run.job)):
            return run
    return None


def busy_error(run: RunFolder) -> RunnerBusy:
    return RunnerBusy(f"run {run.run_id} is still {run.status()['state']}; stop it, wait for it to finish, "
                      "or add this job to the queue")


def launch_attempt(run: RunFolder, from_step: int = 0, checkpoint: str | None = None, *, warm: bool = True) -> None:
    """Open a new attempt in the run's status and launch its supervisor, forked by a warm host when one
    serves this environment (core/runs/warm_start.py; `warm=False` never asks); call under the start lock.
    Raises LaunchError (the run is then marked failed)."""
    run.begin_attempt(from_step, checkpoint)
    warm_start.launch_detached(SUPERVISOR_MODULE, [run.path], run.log_file, job=run, warm=warm)


def launch_orphans(workspace: Path) -> list[RunFolder]:
    """Launch runs left queued without a process by a launcher that died between writing the run and
    starting it (a killed page or scheduler); call under the start lock, where no launch is under way."""
    orphans = []
    for run in list_runs(workspace):
        status = run.raw_status()
        if status["state"] == "queued" and not status.get("pid"):
            attempts = status.get("attempts") or []
            last = attempts[-1] if attempts else {}
            try:
                launch_attempt(run, last.get("from_step", 0), last.get("checkpoint"))
            except LaunchError:
                pass  # marked failed with the reason
            orphans.append(run)
    return orphans


def start(spec: JobSpec, workspace: Path, *, warm: bool = True) -> RunFolder:
    """Write the run folder and launch the trainer; the spec must already be validated. `warm=False`: a
    trainer started in a new interpreter, never forked from a warm host (the benchmarks measure that).

    Raises RunnerBusy (naming the active run) or LaunchError (the run is then marked failed)."""
    with start_lock(workspace):
        launch_orphans(workspace)
        busy = blocking_run(workspace, spec_claim(spec))
        if busy is not None:
            raise busy_error(busy)
        run = new_run_folder(workspace, spec.method)
        write_atomic(run.job, dump_spec(spec))
        # Launched under the lock too, so the next start sees this run with its supervisor's pid.
        launch_attempt(run, warm=warm)
    return run


def start_queued(entry: QueueEntry, workspace: Path, wait_behind: tuple[Claim, ...] = ()) -> RunFolder | None:
    """Start a queued job as a new run, unless an active run (or an earlier entry still waiting, in
    `wait_behind`) claims devices it needs; returns the run, or None when it must wait.

    The entry's file becomes the run's job.yaml by one rename, before anything is launched: a launcher
    that dies after it leaves a queued run without a process, which launch_orphans starts."""
    with start_lock(workspace):
        launch_orphans(workspace)
        claim = entry.claim()
        if blocking_run(workspace, claim) is not None or any(claims_overlap(claim, c) for c in wait_behind):
            return None
        run = new_run_folder(workspace, entry.method)
        # Written before the job moves in, so queue.locate finds the job in the queue or as this run, never
        # neither (a folder without job.yaml is no run yet).
        run.write_status(queued_as=entry.entry_id)
        if not queue.take(workspace, entry, run.job):
            shutil.rmtree(run.path)  # only its status: the job went elsewhere
            return None
        os.utime(run.job)  # the run's age counts from its start, not from when it was queued
        launch_attempt(run)
    return run


def trainer_module(spec: JobSpec) -> str:
    """The process a run starts: the trainer itself, or for several processes (and FSDP/DeepSpeed) the group
    launcher that runs `accelerate launch` with the trainer and watches its ranks as one."""
    return module_for_strategy(spec.runtime.strategy)


def module_for_strategy(strategy: str) -> str:
    from core.runtime.layout import strategy_in_group

    return "core.training.group" if strategy_in_group(strategy) else TRAINER_MODULE


def stop(run: RunFolder) -> None:
    """Ask the trainer to stop after the current step and save what it has (a checkpoint and the adapter)."""
    run.request_stop()


def kill(run: RunFolder, grace_s: float = DEFAULT_GRACE_S) -> str:
    """End the trainer's whole process group now: SIGTERM, SIGKILL after `grace_s`. The run reads stopped
    (killed) and resumes from its last checkpoint. Returns "terminated", "killed" or "gone"."""
    return run.kill(grace_s)


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
    """What a terminal user needs when a run did not complete: the reason in plain words and the end of its log."""
    from core.runs.failure import explain

    reason = explain(status, run.log_tail(8000))
    lines = [f"error: the run ended {status['state']}"]
    if reason is not None:
        lines += [f"reason ({reason.kind}): {reason.sentence}", f"what to do: {reason.advice}"]
        lines += [f"  at {frame}" for frame in reason.frames]
    lines.append(f"--- end of train.log ---\n{run.log_tail(3000)}")
    return "\n".join(lines)


