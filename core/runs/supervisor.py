"""The trainer's supervisor: `python -m core.runs.supervisor RUN_FOLDER`, the process the runner launches.

It starts the trainer as its child, in its own process group, and waits. When the trainer ends without
having written its verdict (killed by a signal, by the kernel's out-of-memory killer, by Kill), the
supervisor writes it at once, with the exit signal that only a parent can know, so the run reads as
failed with its reason within a moment of the death even when no page or terminal is watching.

It imports nothing heavy (no torch): it only waits. It outlives a SIGTERM sent to the group (Kill) so
that it can still record how the trainer ended; SIGKILL ends it like any process.
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


def trainer_command(run: RunFolder) -> list[str]:
    """The command that trains the run: the trainer itself, or the group launcher for several processes.

    Only `runtime.strategy` is read, straight from job.yaml (written by the runner from a checked spec):
    parsing the whole spec loads the method registry, and with it peft, transformers and torch, which cost
    this waiting process seconds of CPU beside the trainer's own start (measured: 4.7-17 s on a busy 2-core machine)."""
    import yaml

    from core.runs.runner import module_for_strategy
    from core.spec.schema import RuntimeSection  # plain dataclasses: no torch

    strategy = RuntimeSection().strategy  # the schema's default, for a job.yaml that leaves it out
    try:
        runtime = (yaml.safe_load(run.job.read_text(encoding="utf-8")) or {}).get("runtime") or {}
        strategy = str(runtime.get("strategy", strategy))
    except (OSError, yaml.YAMLError, AttributeError):  # the trainer reads the job again and reports the fault
        pass
    return [sys.executable, "-m", module_for_strategy(strategy), str(run.job)]


def supervise(run: RunFolder) -> int:
    # A handler, not SIG_IGN: an ignored signal stays ignored in the child after exec, and the trainer must
    # still end on SIGTERM.
    signal.signal(signal.SIGTERM, lambda *_: None)
    oom_kills = host.oom_kill_count()
    # The trainer inherits this process's stdout and stderr: the run's train.log.
    try:
        trainer = subprocess.Popen(trainer_command(run), cwd=PROJECT_ROOT, stdin=subprocess.DEVNULL)
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
