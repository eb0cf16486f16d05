"""The run folder: the only channel between a trainer process and whoever watches it.

    <workspace>/runs/<run_id>/
      job.yaml  status.json  metrics.jsonl  train.log  adapter/  checkpoints/  stop.request

The trainer writes; the UI and the CLI read. Files are replaced atomically
(write to a temporary name, then rename) so a reader never sees half a file.
"""
from __future__ import annotations

import json
import secrets
import time
from pathlib import Path
from typing import ClassVar

# write_atomic and pid_alive are imported from here by other modules too (uploads, bench, tests).
from core.runs.job_folder import ACTIVE_STATES, JobFolder, pid_alive, write_atomic  # noqa: F401

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
