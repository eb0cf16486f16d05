"""The scheduler: `python -m core.runs.scheduler WORKSPACE`, one small process per workspace.

It is started on demand (a job was queued, a page opened or a terminal listed runs while jobs wait),
detached, and it ends by itself when the queue is empty and no run is active. Every second it

- reads every active run's status, which writes the verdict of a trainer that died without reporting
  (its supervisor normally does that at once; this covers a supervisor that was killed with it), and
- starts the queued jobs whose devices are free, in queue order, through the runner.

One per workspace: it holds an exclusive lock on `<workspace>/.scheduler.lock` for as long as it runs,
and the kernel drops that lock when it dies, so a crashed scheduler never blocks the next one.
Everything it knows is on disk (queue/, runs/), so a restarted one simply carries on.
"""
from __future__ import annotations

import fcntl
import json
import os
import sys
import time
from pathlib import Path

from core.runs import queue, runner
from core.runs.folder import list_runs, write_atomic
from core.runs.launch import LaunchError, launch

MODULE = "core.runs.scheduler"
POLL_S = 1.0


def lock_file(workspace: Path) -> Path:
    return Path(workspace) / ".scheduler.lock"


def info_file(workspace: Path) -> Path:
    return Path(workspace) / "scheduler.json"


def log_file(workspace: Path) -> Path:
    return Path(workspace) / "logs" / "scheduler.log"


def try_lock(workspace: Path):
    """The scheduler lock's open file when this process got it, else None (another scheduler holds it)."""
    path = lock_file(workspace)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "a")  # noqa: SIM115 (held open for as long as this scheduler runs)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle


def running_pid(workspace: Path) -> int | None:
    """The pid of this workspace's scheduler, or None when none runs."""
    handle = try_lock(workspace)
    if handle is not None:
        handle.close()  # nobody held it: no scheduler
        return None
    try:
        return json.loads(info_file(workspace).read_text(encoding="utf-8")).get("pid")
    except (OSError, ValueError):
        return -1  # running, but it has not written its pid yet


def has_work(workspace: Path) -> bool:
    return not queue.is_empty(workspace) or any(run.is_active() for run in list_runs(workspace))


def ensure_running(workspace: Path) -> bool:
    """Start the workspace's scheduler when jobs wait and none runs; True when one runs (or was started).
    A second one started at the same moment finds the lock taken and ends at once."""
    if queue.is_empty(workspace):
        return running_pid(workspace) is not None
    if running_pid(workspace) is not None:
        return True
    try:
        launch(MODULE, [Path(workspace).resolve()], log_file(workspace))
    except LaunchError as err:
        print(f"warning: {err}", file=sys.stderr)
        return False
    return True


def tick(workspace: Path) -> list:
    """One round: read every active run (writing the verdict of one that died), then start what may start.
    Returns the runs started."""
    for run in list_runs(workspace):
        run.status()
    started, waiting = [], []
    for entry in queue.entries(workspace):
        claim = entry.claim()
        try:
            run = runner.start_queued(entry, workspace, wait_behind=tuple(waiting))
        except LaunchError as err:  # the run is marked failed with the reason; the queue goes on
            print(f"[scheduler] {entry.entry_id}: {err}", flush=True)
            continue
        if run is None:
            waiting.append(claim)  # later entries must not take the devices this one waits for
        else:
            print(f"[scheduler] started {entry.entry_id} as run {run.run_id}", flush=True)
            started.append(run)
    return started


def serve(workspace: Path) -> int:
    handle = try_lock(workspace)
    if handle is None:
        return 0  # another scheduler runs this workspace
    write_atomic(info_file(workspace), json.dumps({"pid": os.getpid(), "started_at": time.time()}))
    print(f"[scheduler] pid {os.getpid()} watching {workspace}", flush=True)
    while True:
        tick(workspace)
        if not has_work(workspace):
            # Let go first, then look once more: a job queued in between either sees no scheduler (and
            # starts one) or is seen here; either way one scheduler runs it.
            handle.close()
            if not has_work(workspace):
                print("[scheduler] queue empty and nothing running; exiting", flush=True)
                return 0
            handle = try_lock(workspace)
            if handle is None:
                return 0
        time.sleep(POLL_S)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m core.runs.scheduler WORKSPACE", file=sys.stderr)
        return 2
    return serve(Path(argv[0]))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
