"""The evaluation job folder: how the evaluation process and whoever watches it talk, like an export's.

    <workspace>/evals/<job_id>/
      request.json   the checked EvalOptions
      status.json    {"state": queued|running|completed|failed|cancelled, "pid", "stage", "progress" 0..1,
                      "error", "result": {"files": [...]} | null}
      eval.log       the process's stdout and stderr
      cancel.request present once Cancel was pressed; the process checks it between samples

Results are saved in the run folder, `<run>/eval/<dataset>.json` (and `lm-eval-<task>.json`), where every
page and command that shows the run finds them.
"""
from __future__ import annotations

import json
import secrets
import time
from pathlib import Path
from typing import ClassVar

from core.eval.options import EvalOptions, check_options
from core.runs.job_folder import ACTIVE_STATES, JobFolder, write_atomic
from core.runs.warm_start import start_worker

ACTIVE = ACTIVE_STATES
FINAL = ("completed", "failed", "cancelled")


class EvalJob(JobFolder):
    WORKER: ClassVar[str] = "evaluation"
    LOG_NAME: ClassVar[str] = "eval.log"
    END_REQUEST_NAME: ClassVar[str] = "cancel.request"
    FINAL_STATES: ClassVar[tuple[str, ...]] = FINAL
    EMPTY_STATUS: ClassVar[dict] = {"state": "queued", "pid": None, "stage": "queued", "progress": 0.0,
                                    "error": None, "result": None}

    cancel = JobFolder.request_end
    cancel_requested = JobFolder.end_requested

    def options(self) -> EvalOptions:
        return EvalOptions(**json.loads(self.request_file.read_text(encoding="utf-8")))


def active_jobs(workspace: Path) -> list[EvalJob]:
    """The workspace's evaluations that are queued or running (one whose process died reads as failed)."""
    return [job for job in EvalJob.jobs_in(Path(workspace) / "evals") if job.is_active()]


def start(options: EvalOptions, workspace: Path, policy=None) -> EvalJob:
    """Check the options (raising a ValueError that names the option; `policy` is the web server's, see
    check_options), then launch the evaluation process detached. A process that cannot be started raises
    LaunchError and leaves the job marked failed."""
    options = check_options(options, policy)
    job = EvalJob(Path(workspace) / "evals" / f"{time.strftime('%Y%m%d-%H%M%S')}-{Path(options.run).name}-"
                                              f"{secrets.token_hex(2)}")
    job.path.mkdir(parents=True)
    write_atomic(job.request_file, json.dumps(options.to_dict(), indent=1))
    job.write_status(**EvalJob.EMPTY_STATUS)
    start_worker("core.eval.worker", [job.path], job.log_file, job=job, run_job=Path(options.run) / "job.yaml")
    return job
