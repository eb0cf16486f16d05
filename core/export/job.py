"""The export job folder: how the export process and whoever watches it talk, like a run folder.

    <workspace>/exports/<job_id>/
      request.json   the checked ExportOptions
      status.json    {"state": queued|running|completed|failed|cancelled, "pid", "stage", "progress" 0..1,
                      "started_at", "ended_at", "error": {"kind", "message"} | null, "result": {...} | null}
      export.log     the process's stdout and stderr (the GGUF converter's too)
      cancel.request present once Cancel was pressed; the process checks it between and inside stages
"""
from __future__ import annotations

import fcntl
import json
import os
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from core.export.options import ExportOptions, check_options
from core.paths import PROJECT_ROOT
from core.runs.folder import merge_status, pid_alive, poll_until_final, write_atomic

ACTIVE = ("queued", "running")
FINAL = ("completed", "failed", "cancelled")


@dataclass
class ExportJob:
    path: Path

    job_id = property(lambda self: self.path.name)
    request_file = property(lambda self: self.path / "request.json")
    status_file = property(lambda self: self.path / "status.json")
    log_file = property(lambda self: self.path / "export.log")
    cancel_file = property(lambda self: self.path / "cancel.request")

    def options(self) -> ExportOptions:
        return ExportOptions(**json.loads(self.request_file.read_text(encoding="utf-8")))

    def raw_status(self) -> dict:
        try:
            return json.loads(self.status_file.read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError):
            return {"state": "queued", "pid": None, "stage": "queued", "progress": 0.0, "error": None, "result": None}

    def write_status(self, **changes) -> dict:
        # The launcher and the export process both write it.
        return merge_status(self.path, self.status_file, self.raw_status, changes)

    def status(self) -> dict:
        """As written, except that a process that died without saying so reads as failed."""
        status = self.raw_status()
        if status["state"] in ACTIVE and status.get("pid") and not pid_alive(status["pid"]):
            status = self.raw_status()
            if status["state"] in ACTIVE:
                status = self.write_status(state="failed", ended_at=time.time(), error={
                    "kind": "ProcessDied", "message": "the export process ended without reporting; see export.log"})
        return status

    def cancel(self) -> None:
        if self.status()["state"] in ACTIVE:
            self.cancel_file.write_text(str(time.time()))

    def cancel_requested(self) -> bool:
        return self.cancel_file.exists()

    def log_tail(self, max_bytes: int = 3000) -> str:
        try:
            return self.log_file.read_bytes()[-max_bytes:].decode("utf-8", errors="replace")
        except FileNotFoundError:
            return ""


def exports_dir(workspace: Path) -> Path:
    return Path(workspace) / "exports"


class ExportBusy(ValueError):
    """Another export of this workspace is still running."""


def active_job(workspace: Path) -> ExportJob | None:
    """The workspace's export that is queued or running, if any."""
    return next((job for job in list_jobs(workspace) if job.status()["state"] in ACTIVE), None)


def start(options: ExportOptions, workspace: Path, policy=None, exclusive: bool = False) -> ExportJob:
    """Check the options (raising ExportError or RunNotReady), then launch the export process detached.

    `policy` is the web server's access rule (see check_options). With `exclusive` (the web UI), a new export
    is refused while another of the workspace runs, whichever page or API call started it: each writes a whole
    model, and a loop of them would fill the disk."""
    if not exclusive:
        return _launch(check_options(options, policy), workspace)
    root = exports_dir(workspace)
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".start.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two clicks at once must not both see "nothing running"
        running = active_job(workspace)
        if running is not None:
            raise ExportBusy(f"export {running.job_id} is still running; wait for it or cancel it first")
        return _launch(check_options(options, policy), workspace)


def _launch(options: ExportOptions, workspace: Path) -> ExportJob:
    run_id = Path(options.run).name
    job = ExportJob(exports_dir(workspace) / f"{time.strftime('%Y%m%d-%H%M%S')}-{run_id}-{secrets.token_hex(2)}")
    job.path.mkdir(parents=True)
    write_atomic(job.request_file, json.dumps(options.to_dict(), indent=1))
    job.write_status(state="queued", pid=None, stage="queued", progress=0.0, error=None, result=None)
    env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=str(PROJECT_ROOT))
    with open(job.log_file, "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "core.export.worker", str(job.path)], cwd=PROJECT_ROOT,
                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, env=env)
    job.write_status(pid=proc.pid)  # closes the gap before the process writes its own (the same pid)
    return job


def wait(job: ExportJob, on_tick=None, poll_s: float = 0.5) -> dict:
    return poll_until_final(job.status, FINAL, on_tick, poll_s)


def list_jobs(workspace: Path) -> list[ExportJob]:
    root = exports_dir(workspace)
    jobs = [ExportJob(p) for p in root.iterdir() if (p / "request.json").is_file()] if root.is_dir() else []
    return sorted(jobs, key=lambda j: j.request_file.stat().st_mtime, reverse=True)
