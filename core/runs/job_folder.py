"""A job folder: how a worker process (trainer, export) and whoever watches it talk, through files only.

Every kind of job has the same four things, under names its kind chooses:

    status.json     {"state": queued|running|<final>, "pid", ..., "error": {"kind", "message"} | null}
    <log>           the worker's stdout and stderr
    <end request>   present once the user asked the worker to stop (or cancel); the worker checks it

The launcher and the worker both write the status, so every write is a locked merge, and every file is
replaced atomically (temporary name, then rename) so a reader never sees half of one.
"""
from __future__ import annotations

import fcntl
import json
import os
import signal
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

ACTIVE_STATES = ("queued", "running")


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


@contextmanager
def file_lock(path: Path):
    """Hold an exclusive lock on `path` (created if missing) until the block ends.

    flock belongs to the open file, and each call opens its own, so the lock excludes other
    processes and other threads of this one alike; the kernel drops it if the holder dies."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


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


def tail_text(path: Path, max_bytes: int) -> str:
    """The last `max_bytes` of a text file, read from there: a long log is never read whole."""
    try:
        with open(path, "rb") as fh:
            size = fh.seek(0, os.SEEK_END)
            fh.seek(max(0, size - max_bytes))
            return fh.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return ""


@dataclass
class JobFolder:
    """One job's folder. A kind of job names its log, its end-request file, its final states and
    what its status holds before the first write; the rules below are the same for every kind."""

    path: Path

    WORKER: ClassVar[str] = "worker"  # how the died-without-reporting message names the process
    LOG_NAME: ClassVar[str] = "job.log"
    END_REQUEST_NAME: ClassVar[str] = "end.request"
    FINAL_STATES: ClassVar[tuple[str, ...]] = ("completed", "failed")
    EMPTY_STATUS: ClassVar[dict] = {"state": "queued", "pid": None, "error": None}

    REQUEST_NAME: ClassVar[str] = "request.json"  # what a job asked for, written before it starts (exports, evaluations)

    status_file = property(lambda self: self.path / "status.json")
    request_file = property(lambda self: self.path / self.REQUEST_NAME)
    log_file = property(lambda self: self.path / self.LOG_NAME)
    end_request_file = property(lambda self: self.path / self.END_REQUEST_NAME)

    @classmethod
    def jobs_in(cls, root: Path) -> list:
        """The jobs of this kind in `root` (the folders whose request is written), newest first."""
        jobs = [cls(p) for p in root.iterdir() if (p / cls.REQUEST_NAME).is_file()] if root.is_dir() else []
        return sorted(jobs, key=lambda job: job.request_file.stat().st_mtime, reverse=True)

    # --- status -----------------------------------------------------------------
    def raw_status(self) -> dict:
        try:
            return json.loads(self.status_file.read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError):
            return dict(self.EMPTY_STATUS)

    def write_status(self, **changes) -> dict:
        """Merge `changes` into status.json. The launcher and the worker both write it, so the
        read-modify-write holds the folder's status lock: otherwise one could undo the other's change."""
        with file_lock(self.path / ".status.lock"):
            status = {**self.raw_status(), **changes}
            write_atomic(self.status_file, json.dumps(status, indent=1))
        return status

    def status(self) -> dict:
        """The status as written, except that a job whose process died without saying so reads as failed
        (or as its kind words it, see `death_verdict`), and that verdict is written down for every later reader."""
        status = self.raw_status()
        if status["state"] in ACTIVE_STATES and self.worker_gone(status):
            status = self.raw_status()  # it may have written its last word just now
            if status["state"] in ACTIVE_STATES and self.worker_gone(status):
                verdict = self.death_verdict(status)
                try:
                    status = self.write_status(**verdict)
                except OSError as err:  # a full disk: the reader still gets the verdict, and says why it is not saved
                    verdict["error"]["message"] += f" (status.json could not be updated: {err.strerror})"
                    status = {**status, **verdict}
        return status

    def worker_gone(self, status: dict) -> bool:
        """True when the active job's process no longer exists (before it has a pid, it is being launched)."""
        return bool(status.get("pid")) and not pid_alive(status["pid"])

    def death_verdict(self, status: dict, returncode: int | None = None) -> dict:
        """The status changes that record a worker that ended without reporting."""
        return {"state": "failed", "ended_at": time.time(), "error": {
            "kind": "ProcessDied", "message": f"the {self.WORKER} process ended without reporting; see {self.LOG_NAME}"}}

    def is_active(self) -> bool:
        return self.status()["state"] in ACTIVE_STATES

    def mark_failed(self, err: BaseException) -> dict:
        return self.write_status(state="failed", ended_at=time.time(),
                                 error={"kind": type(err).__name__, "message": str(err)[:2000]})

    # --- asking the worker to end -------------------------------------------------
    def request_end(self) -> bool:
        """Ask an active worker to end at its next check (it saves or cleans up first); False if none is active."""
        if not self.is_active():
            return False
        self.end_request_file.write_text(str(time.time()))
        return True

    def end_requested(self) -> bool:
        return self.end_request_file.exists()

    def kill(self) -> None:
        """Last resort when a worker ignores the request (e.g. stuck loading): end its whole session."""
        pid = self.raw_status().get("pid")
        if pid_alive(pid):
            os.killpg(pid, signal.SIGTERM)

    # --- log ------------------------------------------------------------------------
    def log_tail(self, max_bytes: int = 4000) -> str:
        return tail_text(self.log_file, max_bytes)

    def wait(self, on_tick=None, poll_s: float = 0.5) -> dict:
        """Block until the job's state is final; `on_tick(status)` sees every reading."""
        while True:
            status = self.status()
            if on_tick:
                on_tick(status)
            if status["state"] in self.FINAL_STATES:
                return status
            time.sleep(poll_s)
