"""The run folder: the only channel between a trainer process and whoever watches it.

    <workspace>/runs/<run_id>/
      job.yaml  status.json  metrics.jsonl  train.log  adapter/  checkpoints/  stop.request

The trainer writes; the UI and the CLI read. Files are replaced atomically
(write to a temporary name, then rename) so a reader never sees half a file.
"""
from __future__ import annotations

import fcntl
import json
import os
import secrets
import signal
import time
from dataclasses import dataclass
from pathlib import Path

ACTIVE_STATES = ("queued", "running")
FINAL_STATES = ("completed", "failed", "stopped")


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def merge_status(folder: Path, status_file: Path, read, changes: dict) -> dict:
    """Merge `changes` into a status file that two processes write (a launcher and its worker).
    The read-modify-write holds a lock in `folder`: otherwise one could undo the other's change."""
    with open(folder / ".status.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        status = {**read(), **changes}
        write_atomic(status_file, json.dumps(status, indent=1))
    return status


def poll_until_final(read_status, final_states, on_tick=None, poll_s: float = 0.5) -> dict:
    """Re-read a status until its state is final; `on_tick(status)` sees every reading."""
    while True:
        status = read_status()
        if on_tick:
            on_tick(status)
        if status["state"] in final_states:
            return status
        time.sleep(poll_s)


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A child that exited but was not yet reaped is a zombie: dead for our purposes.
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return True


@dataclass
class RunFolder:
    path: Path

    @property
    def run_id(self) -> str:
        return self.path.name

    job = property(lambda self: self.path / "job.yaml")
    status_file = property(lambda self: self.path / "status.json")
    metrics_file = property(lambda self: self.path / "metrics.jsonl")
    log_file = property(lambda self: self.path / "train.log")
    adapter_dir = property(lambda self: self.path / "adapter")
    checkpoints_dir = property(lambda self: self.path / "checkpoints")
    stop_file = property(lambda self: self.path / "stop.request")

    # --- status -----------------------------------------------------------------
    def write_status(self, **changes) -> dict:
        """Merge `changes` into status.json; the runner and the trainer both write it."""
        return merge_status(self.path, self.status_file, self.raw_status, changes)

    def raw_status(self) -> dict:
        try:
            return json.loads(self.status_file.read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError):
            return {
                "state": "queued", "pid": None, "started_at": None, "ended_at": None,
                "step": 0, "total_steps": 0, "error": None,
            }

    def status(self) -> dict:
        """The status as written, except that a run whose process died without saying so reads as failed."""
        status = self.raw_status()
        if status["state"] in ACTIVE_STATES and status.get("pid") and not pid_alive(status["pid"]):
            status = self.raw_status()  # it may have written its last word just now
            if status["state"] in ACTIVE_STATES:
                verdict = dict(state="failed", ended_at=time.time(),
                               error={"kind": "ProcessDied", "message": "the trainer process ended without reporting; see train.log"})
                try:
                    status = self.write_status(**verdict)
                except OSError as err:  # a full disk: the reader still gets the verdict, and says why it is not saved
                    verdict["error"]["message"] += f" (status.json could not be updated: {err.strerror})"
                    status = {**status, **verdict}
        return status

    def is_active(self) -> bool:
        return self.status()["state"] in ACTIVE_STATES

    # --- stop request -------------------------------------------------------------
    def request_stop(self) -> None:
        self.stop_file.write_text(str(time.time()))

    def stop_requested(self) -> bool:
        return self.stop_file.exists()

    def kill(self) -> None:
        """Last resort when a trainer ignores the stop request (e.g. stuck loading)."""
        pid = self.raw_status().get("pid")
        if pid_alive(pid):
            os.killpg(pid, signal.SIGTERM)

    # --- metrics and log ----------------------------------------------------------
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

    def log_tail(self, max_bytes: int = 4000) -> str:
        try:
            with open(self.log_file, "rb") as fh:
                fh.seek(0, os.SEEK_END)
                size = fh.tell()
                fh.seek(max(0, size - max_bytes))
                return fh.read().decode("utf-8", errors="replace")
        except FileNotFoundError:
            return ""


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
