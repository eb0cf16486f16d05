"""The trainer's supervisor: `python -m core.runs.supervisor RUN_FOLDER`, the process the runner launches.

It starts the trainer as its child, in its own process group, and waits. When the trainer ends without
having written its verdict (killed by a signal, by the kernel's out-of-memory killer, by Kill), the
supervisor writes it at once, with the exit signal that only a parent can know, so the run reads as
failed with its reason within a moment of the death even when no page or terminal is watching.

It imports nothing heavy (no torch): it only waits. Forked by a warm host (core/runs/warm_start.py), it
has torch, transformers, TRL and PEFT loaded already, and forks the trainer instead of starting a new
interpreter when the job allows (can_fork_trainer), which saves the trainer those imports. It outlives a
SIGTERM sent to the group (Kill) so that it can still record how the trainer ended; SIGKILL ends it like
any process.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from core.paths import PROJECT_ROOT
from core.runs import host
from core.runs.folder import ACTIVE_STATES, RunFolder
from core.runs.warm_start import job_needs_bitsandbytes, read_job, section


def trainer_command(run: RunFolder, job: dict | None = None) -> list[str]:
    """The command that trains the run: the trainer itself, or the group launcher for several processes."""
    from core.runs.runner import module_for_strategy
    from core.spec.schema import RuntimeSection  # plain dataclasses: no torch

    job = read_job(run.job) if job is None else job
    strategy = str(section(job, "runtime").get("strategy", RuntimeSection().strategy))
    return [sys.executable, "-m", module_for_strategy(strategy), str(run.job)]


FORKED_LINE = "trainer forked from the warm host (libraries already loaded)"


def can_fork_trainer(command: list[str], job: dict) -> bool:
    """In a process forked by a warm host (core/runs/warm_host.py), whether the trainer may be forked from
    it too: a single-process trainer of a job that needs no bitsandbytes (the host left it out) and keeps off
    GPUs (a GPU driver does not work in a child forked after it was set up, and importing the libraries on a
    machine with GPUs may set it up)."""
    from core.runs import warm_host
    from core.runs.runner import TRAINER_MODULE
    from core.spec.schema import RuntimeSection

    if not warm_host.in_warm_fork or command[2] != TRAINER_MODULE:
        return False
    if str(section(job, "runtime").get("device", RuntimeSection().device)) != "cpu" and gpu_device_nodes():
        return False
    return not job_needs_bitsandbytes(job)


def gpu_device_nodes() -> list[str]:
    """The machine's NVIDIA and AMD GPU device files, found without loading a driver library."""
    import glob

    return glob.glob("/dev/nvidia[0-9]*") + glob.glob("/dev/kfd")


class ForkedTrainer:
    """A trainer forked from this process: its pid, and wait() with Popen's returncode (-N for signal N)."""

    def __init__(self, pid: int):
        self.pid = pid

    def wait(self) -> int:
        return os.waitstatus_to_exitcode(os.waitpid(self.pid, 0)[1])


def start_trainer(run: RunFolder):
    """The trainer as this process's child, with its output on this process's (the run's train.log)."""
    from core.runs import warm_host

    job = read_job(run.job)
    command = trainer_command(run, job)
    if can_fork_trainer(command, job):
        # Said in the log so a slow or odd start can be told apart from a new interpreter's.
        print(f"[workbench] {FORKED_LINE}", flush=True)
        return ForkedTrainer(warm_host.fork_module(command[2], command[3:]))
    return subprocess.Popen(command, cwd=PROJECT_ROOT, stdin=subprocess.DEVNULL)


def supervise(run: RunFolder) -> int:
    # A handler, not SIG_IGN: an ignored signal stays ignored in the child after exec, and the trainer must
    # still end on SIGTERM.
    signal.signal(signal.SIGTERM, lambda *_: None)
    if run.raw_status()["state"] != "queued":  # its launcher gave up on this attempt (core/runs/warm_start.py)
        print("[workbench] the launch was given up before the trainer started; nothing was started", flush=True)
        return 0
    oom_kills = host.oom_kill_count()
    try:
        trainer = start_trainer(run)
    except OSError as err:
        run.mark_failed(err)
        return 1
    run.write_status(pid=trainer.pid, supervisor=os.getpid(), pgid=os.getpgrp(), oom_kills_at_start=oom_kills)
    returncode = trainer.wait()
    status = run.raw_status()
    # A resume may already have opened the next attempt (the trainer wrote its verdict, then took a moment
    # to exit): that attempt is not this supervisor's to judge.
    if status.get("supervisor") == os.getpid() and status["state"] in ACTIVE_STATES:
        status = run.write_status(**run.death_verdict(status, returncode))
        print(f"[workbench] the trainer ended without reporting: {status['error']['message']}", flush=True)
    return 0


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m core.runs.supervisor RUN_FOLDER", file=sys.stderr)
        return 2
    return supervise(RunFolder(Path(argv[0]).resolve()))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
