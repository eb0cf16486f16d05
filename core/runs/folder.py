"""The run folder: the only channel between a trainer process and whoever watches it.

    <workspace>/runs/<run_id>/
      job.yaml  status.json  metrics.jsonl  train.log  adapter/  checkpoints/  stop.request

The trainer writes; the UI and the CLI read. Files are replaced atomically
(write to a temporary name, then rename) so a reader never sees half a file.
"""
from __future__ import annotations

import json
import os
import secrets
import time
from pathlib import Path
from typing import ClassVar

from core.runs import failure, host
from core.runs.job_folder import ACTIVE_STATES, JobFolder, pid_alive, write_atomic  # noqa: F401 (re-exported)
from core.runs.process_group import DEFAULT_GRACE_S, command_line, end_group, exit_status_of_zombie

# write_atomic and pid_alive are imported from here by other modules too (uploads, bench, tests).
SUPERVISOR_MODULE = "core.runs.supervisor"
# A supervisor forked by a warm host keeps the host's command line (core/runs/warm_host.py).
SUPERVISOR_COMMANDS = (SUPERVISOR_MODULE, "core.runs.warm_host")

FINAL_STATES = ("completed", "failed", "stopped")


class RunFolder(JobFolder):
    """A training run: the job folder of a trainer, plus its job, metrics, adapter and checkpoints."""

    WORKER: ClassVar[str] = "trainer"
    LOG_NAME: ClassVar[str] = "train.log"
    END_REQUEST_NAME: ClassVar[str] = "stop.request"
    FINAL_STATES: ClassVar[tuple[str, ...]] = FINAL_STATES
    EMPTY_STATUS: ClassVar[dict] = {"state": "queued", "pid": None, "started_at": None, "ended_at": None,
                                    "step": 0, "total_steps": 0, "error": None}

    run_id = property(lambda self: self.path.name)
    job = property(lambda self: self.path / "job.yaml")
    metrics_file = property(lambda self: self.path / "metrics.jsonl")
    adapter_dir = property(lambda self: self.path / "adapter")
    checkpoints_dir = property(lambda self: self.path / "checkpoints")
    stop_file = JobFolder.end_request_file
    request_stop = JobFolder.request_end
    stop_requested = JobFolder.end_requested

    # --- is the trainer still there? ------------------------------------------------
    def supervisor_alive(self, status: dict) -> bool:
        """The trainer's supervisor (core/runs/supervisor.py) still waits on it, so it will write the verdict
        itself, with the exit signal only it knows. A pid that now names another program does not count."""
        pid = status.get("supervisor")
        return bool(pid) and pid_alive(pid) and any(name in command_line(pid) for name in SUPERVISOR_COMMANDS)

    def worker_gone(self, status: dict) -> bool:
        if failure.machine_restarted(status):
            return True  # whatever holds its pid today is not its trainer
        if self.supervisor_alive(status):
            return False
        return super().worker_gone(status)

    def death_verdict(self, status: dict, returncode: int | None = None) -> dict:
        if returncode is None:
            returncode = exit_status_of_zombie(status.get("pid"))  # a parent that has not reaped it yet
        return failure.death_verdict(status, returncode, self.read_metrics()[0])

    def process_group(self, status: dict) -> int | None:
        """The trainer's process group: the supervisor's, or (runs launched before there was one) the
        trainer's own when it leads its group."""
        if status.get("pgid"):
            return status["pgid"]
        pid = status.get("pid")
        try:
            return pid if pid and os.getpgid(pid) == pid else None
        except ProcessLookupError:
            return None

    def kill(self, grace_s: float = DEFAULT_GRACE_S) -> str:
        """End the trainer's whole process group (SIGTERM, then SIGKILL after `grace_s`) and record the run
        as stopped (killed): it stays resumable from its last checkpoint. Returns how the group ended."""
        status = self.raw_status()
        if status["state"] not in ACTIVE_STATES:
            return "gone"
        self.write_status(kill_requested_at=time.time())
        pgid = self.process_group(status)
        ended = end_group(pgid, grace_s) if pgid else "gone"
        status = self.raw_status()
        if status["state"] in ACTIVE_STATES:  # the supervisor went down with the group before writing it
            self.write_status(**self.death_verdict(status))
        return ended

    # --- attempts -------------------------------------------------------------------
    def begin_attempt(self, from_step: int = 0, checkpoint: str | None = None) -> dict:
        """Record that the trainer is about to be launched (again): the previous attempt is closed with how
        it ended, a new one opens, and the run is queued for its launcher. Resume reads `checkpoint`."""
        status = self.raw_status()
        attempts = [dict(a) for a in status.get("attempts") or []]
        if attempts:
            error = status.get("error") or {}
            attempts[-1].update(ended_at=status.get("ended_at"), state=status.get("state"), step=status.get("step"),
                                error=error.get("message"), error_kind=error.get("kind"))
        attempts.append({"launched_at": time.time(), "from_step": from_step, "checkpoint": checkpoint})
        return self.write_status(state="queued", pid=None, supervisor=None, pgid=None, ended_at=None, error=None,
                                 phase=None, kill_requested_at=None, step=from_step, boot_id=host.boot_id(),
                                 attempts=attempts)

    def resume_checkpoint(self) -> Path | None:
        """The checkpoint this attempt continues from, or None for a fresh start."""
        attempts = self.raw_status().get("attempts") or []
        name = attempts[-1].get("checkpoint") if attempts else None
        return self.checkpoints_dir / name if name else None

    # --- metrics ------------------------------------------------------------------
    def append_metrics(self, record: dict) -> None:
        with open(self.metrics_file, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")

    def read_metrics(self, offset: int = 0) -> tuple[list[dict], int]:
        """Read records appended after byte `offset`; returns them and the new offset.

        A line still being written (no newline yet) is left for the next call.
        """
        try:
            with open(self.metrics_file, "rb") as fh:
                fh.seek(offset)
                chunk = fh.read()
        except FileNotFoundError:
            return [], offset
        end = chunk.rfind(b"\n") + 1
        records = [json.loads(line) for line in chunk[:end].splitlines() if line.strip()]
        return records, offset + end


def runs_dir(workspace: Path) -> Path:
    return Path(workspace) / "runs"


def new_run_folder(workspace: Path, method: str) -> RunFolder:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = runs_dir(workspace) / f"{stamp}-{method}-{secrets.token_hex(2)}"
    path.mkdir(parents=True)
    return RunFolder(path)


def list_runs(workspace: Path) -> list[RunFolder]:
    """All runs in the workspace, newest first."""
    root = runs_dir(workspace)
    if not root.is_dir():
        return []
    folders = [RunFolder(p) for p in root.iterdir() if (p / "job.yaml").is_file()]
    return sorted(folders, key=lambda r: r.job.stat().st_mtime, reverse=True)


def active_run(workspace: Path) -> RunFolder | None:
    for run in list_runs(workspace):
        if run.is_active():
            return run
    return None
