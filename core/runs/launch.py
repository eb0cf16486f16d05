"""The one way the workbench starts a worker process (trainer, export, chat worker).

A worker is `python -m <module> ARGS` run from the project root with the project on PYTHONPATH and
unbuffered output, so its log is current while it works. Its output goes straight to a log file,
never to a pipe that only a watcher drains (a worker blocked on a full pipe stops working when the
page that read it is closed). Two shapes:

- detached (trainer, export): its own session, so it outlives the UI or the terminal that started it
  and can be ended as one process group; stdin is closed.
- piped (chat worker): a child that talks JSON lines over stdin/stdout; only stderr goes to the log.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from core.paths import PROJECT_ROOT
from core.runs.job_folder import JobFolder


class LaunchError(OSError):
    """The worker process could not be started (no interpreter, no memory for fork, no permission)."""


def worker_pythonpath() -> str:
    """The project first, then whatever PYTHONPATH the user already had: packages installed with
    `pip install --target` (common on shared GPU machines) live there, and a worker without them fails
    at its first import (found on the GPU machine: trainers died with "No module named 'trl'")."""
    inherited = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != str(PROJECT_ROOT)]
    return os.pathsep.join([str(PROJECT_ROOT), *inherited])


def worker_env() -> dict[str, str]:
    """The environment a worker gets: this process's, with unbuffered output and the project importable."""
    return dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=worker_pythonpath())


def launch(module: str, args: list[str], log_file: Path, *, job: JobFolder | None = None,
           piped: bool = False) -> subprocess.Popen:
    """Start `python -m module args`, output appended to `log_file`.

    With `job`, its status gets the worker's pid at once (the worker writes the same pid when it starts;
    this closes the gap), or, if the start fails, is marked failed with the reason: a queued job with
    no process would otherwise read as active forever and block the next start.
    """
    command = [sys.executable, "-m", module, *map(str, args)]
    env = worker_env()
    pipe = subprocess.PIPE if piped else subprocess.DEVNULL
    try:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        with open(log_file, "ab") as log:  # the child keeps its own copy of the descriptor
            proc = subprocess.Popen(command, cwd=PROJECT_ROOT, env=env, stdin=pipe,
                                    stdout=pipe if piped else log, stderr=log if piped else subprocess.STDOUT,
                                    start_new_session=not piped)
    except OSError as err:
        if job is not None:
            job.mark_failed(err)
        raise LaunchError(f"could not start {' '.join(command[:3])}: {err}") from err
    if job is not None:
        # Only the pid is merged, under the status lock, so a "running" the worker already wrote stays.
        job.write_status(pid=proc.pid)
    return proc
