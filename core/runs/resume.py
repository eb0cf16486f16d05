"""Resume: continue a failed or stopped run in the same folder from its last whole checkpoint.

The trainer loads the checkpoint through the Trainer's resume_from_checkpoint, which restores the
adapter weights, the optimiser, the learning-rate schedule, the random state and the position in the
data (the batches of the current epoch already trained are skipped). Before the launch, everything the
run wrote past that checkpoint goes: metrics records of later steps (so every step is logged exactly
once), checkpoint folders that are not whole, and the stop request that ended the last attempt.
status.json keeps each attempt: when it was launched, where it started and how it ended.

A completed run is not resumed: it is continued as a new run that starts from its adapter
(`continue_job`), with its own schedule and as many epochs as the user asks.
"""
from __future__ import annotations

import time
from pathlib import Path

from core.runs import checkpoints, runner
from core.runs.claims import job_file_claim
from core.runs.folder import ACTIVE_STATES, RunFolder
from core.runs.process_group import group_members

LAST_ATTEMPT_WAIT_S = 30.0


class NotResumable(ValueError):
    """The run cannot be resumed; the message says why and what to do instead."""


def resume_point(run: RunFolder) -> tuple[int, Path] | None:
    """(step, checkpoint) a resume would continue from, or None."""
    return checkpoints.last_checkpoint(run)


def why_not_resumable(run: RunFolder, status: dict | None = None) -> str | None:
    """Why Resume is not offered for this run, or None when it is."""
    status = status or run.status()
    state = status["state"]
    if state in ACTIVE_STATES:
        return f"run {run.run_id} is still {state}"
    if state == "completed":
        return (f"run {run.run_id} completed; to train it further, start a new run from its adapter "
                f"(model.init_adapter: {run.adapter_dir})")
    if resume_point(run) is None:
        return f"run {run.run_id} has no whole checkpoint to resume from; start it again"
    return None


def resume(run: RunFolder, workspace: Path) -> int:
    """Relaunch the run's trainer from its last whole checkpoint; returns that checkpoint's step.

    Raises NotResumable, runner.RunnerBusy (a run with overlapping devices is active) or LaunchError."""
    with runner.start_lock(workspace):
        reason = why_not_resumable(run)
        if reason:
            raise NotResumable(reason)
        busy = runner.blocking_run(workspace, job_file_claim(run.job))
        if busy is not None:
            raise runner.busy_error(busy)
        wait_for_last_attempt(run)
        step, folder = resume_point(run)
        checkpoints.remove_after(run, step)
        checkpoints.cut_metrics_after(run, step)
        run.stop_file.unlink(missing_ok=True)
        runner.launch_attempt(run, from_step=step, checkpoint=folder.name)
    return step


def wait_for_last_attempt(run: RunFolder, timeout_s: float = LAST_ATTEMPT_WAIT_S) -> None:
    """Wait until nothing of the last attempt's process group is left: a trainer writes `stopped` (or its
    error) and then still takes a moment to exit, and two attempts must never write the folder at once."""
    pgid = run.raw_status().get("pgid")
    deadline = time.monotonic() + timeout_s
    while pgid and group_members(pgid):
        if time.monotonic() > deadline:
            raise NotResumable(f"the last trainer of run {run.run_id} (process group {pgid}) is still ending; "
                               "try again in a moment, or Kill it")
        time.sleep(0.1)


def continue_job(run: RunFolder) -> dict:
    """A completed (or stopped) run's job as plain data, set to start a new run from its adapter."""
    from core.spec import load_spec

    if not (run.adapter_dir / "adapter_config.json").is_file():
        raise NotResumable(f"run {run.run_id} has no adapter to continue from")
    spec = load_spec(str(run.job))
    data = spec.to_dict()
    data["model"]["init_adapter"] = str(run.adapter_dir)
    return data
