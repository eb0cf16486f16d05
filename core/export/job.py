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
import secrets
import time
from pathlib import Path
from typing import ClassVar

from core.export.options import ExportOptions, check_options
from core.runs.job_folder import ACTIVE_STATES, JobFolder, write_atomic
from core.runs.warm_start import start_worker

ACTIVE = ACTIVE_STATES
FINAL = ("completed", "failed", "cancelled")


class ExportJob(JobFolder):
    WORKER: ClassVar[str] = "export"
    LOG_NAME: ClassVar[str] = "export.log"
    END_REQUEST_NAME: ClassVar[str] = "cancel.request"
    FINAL_STATES: ClassVar[tuple[str, ...]] = FINAL
    EMPTY_STATUS: ClassVar[dict] = {"state": "queued", "pid": None, "stage": "queued", "progress": 0.0,
                                    "error": None, "result": None}

    job_id = property(lambda self: self.path.name)
    cancel_file = JobFolder.end_request_file
    cancel = JobFolder.request_end
    cancel_requested = JobFolder.end_requested

    def options(self) -> ExportOptions:
        return ExportOptions(**json.loads(self.request_file.read_text(encoding="utf-8")))


def exports_dir(workspace: Path) -> Path:
    return Path(workspace) / "exports"


class ExportBusy(ValueError):
    """Another export of this workspace is still running."""


def list_jobs(workspace: Path) -> list[ExportJob]:
    """The workspace's exports, newest first."""
    return ExportJob.jobs_in(exports_dir(workspace))


def active_job(workspace: Path) -> ExportJob | None:
    """The workspace's export that is queued or running, if any."""
    return next((job for job in list_jobs(workspace) if job.is_active()), None)


def start(options: ExportOptions, workspace: Path, policy=None, exclusive: bool = False) -> ExportJob:
    """Check the options (raising ExportError or RunNotReady), then launch the export process detached.
    A process that cannot be started raises LaunchError and leaves the job marked failed.

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
    job.write_status(**ExportJob.EMPTY_STATUS)
    start_worker("core.export.worker", [job.path], job.log_file, job=job, run_job=Path(options.run) / "job.yaml")
    return job


def wait(job: ExportJob, on_tick=None, poll_s: float = 0.5) -> dict:
    return job.wait(on_tick, poll_s)
