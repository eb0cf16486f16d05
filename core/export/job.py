"""The export job folder: how the export process and whoever watches it talk, like a run folder.

    <workspace>/exports/<job_id>/
      request.json   the checked ExportOptions
      status.json    {"state": queued|running|completed|failed|cancelled, "pid", "stage", "progress" 0..1,
                      "started_at", "ended_at", "error": {"kind", "message"} | null, "result": {...} | null}
      export.log     the process's stdout and stderr (the GGUF converter's too)
      cancel.request present once Cancel was pressed; the process checks it between and inside stages
"""
from __future__ import annotations

import json
import secrets
import time
from pathlib import Path
from typing import ClassVar

from core.export.options import ExportOptions, check_options
from core.runs.job_folder import ACTIVE_STATES, JobFolder, write_atomic
from core.runs.launch import launch

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
    request_file = property(lambda self: self.path / "request.json")
    cancel_file = JobFolder.end_request_file
    cancel = JobFolder.request_end
    cancel_requested = JobFolder.end_requested

    def options(self) -> ExportOptions:
        return ExportOptions(**json.loads(self.request_file.read_text(encoding="utf-8")))


def exports_dir(workspace: Path) -> Path:
    return Path(workspace) / "exports"


def start(options: ExportOptions, workspace: Path) -> ExportJob:
    """Check the options (raising ExportError or RunNotReady), then launch the export process detached.
    A process that cannot be started raises LaunchError and leaves the job marked failed."""
    options = check_options(options)
    run_id = Path(options.run).name
    job = ExportJob(exports_dir(workspace) / f"{time.strftime('%Y%m%d-%H%M%S')}-{run_id}-{secrets.token_hex(2)}")
    job.path.mkdir(parents=True)
    write_atomic(job.request_file, json.dumps(options.to_dict(), indent=1))
    job.write_status(**ExportJob.EMPTY_STATUS)
    launch("core.export.worker", [job.path], job.log_file, job=job)
    return job


def wait(job: ExportJob, on_tick=None, poll_s: float = 0.5) -> dict:
    return job.wait(on_tick, poll_s)
