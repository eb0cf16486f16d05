"""The queue: jobs waiting to start, as files in `<workspace>/queue/`.

    queue/<entry_id>.yaml   a validated job, exactly as it will become the run's job.yaml
    queue/order.json        the entry ids in the order they start (ids missing from it go last, oldest first)

A job leaves the queue by a rename of its file into a new run folder (core/runs/runner.py,
start_queued), so at every moment it is either waiting here or is a run, never both and never neither:
a page, a terminal or the scheduler killed at any point loses nothing and starts nothing twice. The run
records the entry it came from (status.json `queued_as`).

The API for code that queues jobs (the CLI, the Train tab, sweeps):

    entry_id = enqueue(workspace, spec)   # a validated JobSpec; the scheduler is started if none runs
    entries(workspace)                    # QueueEntry objects still waiting, next first (position 1)
    locate(workspace, entry_id)           # the QueueEntry while it waits, the RunFolder once it started
                                          # (read its status() for state/step/error), None if removed
    started_runs(workspace)               # {entry_id: RunFolder} of every run that came from the queue
    move(workspace, entry_id, by) / remove(workspace, entry_id)

Validation (core.spec check_launch) is the caller's: the queue holds jobs that were fine when queued.
"""
from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from core.runs.claims import Claim, job_file_claim
from core.runs.job_folder import file_lock, write_atomic


def queue_dir(workspace: Path) -> Path:
    return Path(workspace) / "queue"


def _order_file(workspace: Path) -> Path:
    return queue_dir(workspace) / "order.json"


def _lock(workspace: Path):
    return file_lock(queue_dir(workspace) / ".lock")


class QueueError(ValueError):
    """An entry that is not (any more) in the queue."""


def _not_queued(entry_id: str) -> QueueError:
    return QueueError(f"{entry_id} is not in the queue (it may have started)")


@dataclass(frozen=True)
class QueueEntry:
    entry_id: str
    path: Path
    position: int  # 1 = starts next

    @property
    def added_at(self) -> float | None:
        try:
            return self.path.stat().st_mtime
        except FileNotFoundError:
            return None

    def job(self) -> dict:
        """The job as plain data (read only: the scheduler does not parse specs)."""
        try:
            data = yaml.safe_load(self.path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError):
            return {}
        return data if isinstance(data, dict) else {}

    @property
    def method(self) -> str:
        return str(self.job().get("method") or "lora")

    def claim(self) -> Claim:
        return job_file_claim(self.path)


def _read_order(workspace: Path) -> list[str]:
    try:
        order = json.loads(_order_file(workspace).read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return []
    return [str(i) for i in order] if isinstance(order, list) else []


def _ordered_ids(workspace: Path) -> list[str]:
    folder = queue_dir(workspace)
    if not folder.is_dir():
        return []
    stamped = []
    for path in folder.glob("*.yaml"):
        try:
            stamped.append((path.stat().st_mtime, path.name, path.stem))
        except FileNotFoundError:  # taken or removed while we looked
            continue
    present = [stem for _, _, stem in sorted(stamped)]
    listed = [i for i in _read_order(workspace) if i in present]
    return listed + [i for i in present if i not in listed]


def entries(workspace: Path) -> list[QueueEntry]:
    """The waiting jobs, next first."""
    folder = queue_dir(workspace)
    return [QueueEntry(i, folder / f"{i}.yaml", n) for n, i in enumerate(_ordered_ids(workspace), start=1)]


def is_empty(workspace: Path) -> bool:
    folder = queue_dir(workspace)
    return not folder.is_dir() or not any(folder.glob("*.yaml"))


def add(workspace: Path, job_text: str) -> QueueEntry:
    """Queue a validated job (its job.yaml text, from core.spec.dump_spec) last."""
    folder = queue_dir(workspace)
    folder.mkdir(parents=True, exist_ok=True)
    entry_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
    with _lock(workspace):
        order = _ordered_ids(workspace)
        write_atomic(folder / f"{entry_id}.yaml", job_text)
        write_atomic(_order_file(workspace), json.dumps(order + [entry_id]))
    return next(e for e in entries(workspace) if e.entry_id == entry_id)


def enqueue(workspace: Path, spec, start_scheduler: bool = True) -> str:
    """Queue a validated JobSpec last and make sure the workspace's scheduler runs; returns the entry id
    (see `locate` to follow it into its run)."""
    from core.runs import scheduler
    from core.spec import dump_spec

    entry = add(workspace, dump_spec(spec))
    if start_scheduler:
        scheduler.ensure_running(workspace)
    return entry.entry_id


def started_runs(workspace: Path) -> dict:
    """entry id -> RunFolder for every run of the workspace that was started from the queue."""
    from core.runs.folder import list_runs

    found = {}
    for run in list_runs(workspace):
        entry_id = run.raw_status().get("queued_as")
        if entry_id:
            found[entry_id] = run
    return found


def locate(workspace: Path, entry_id: str):
    """Where a queued job is now: its QueueEntry while it waits, its RunFolder once started, else None
    (removed from the queue, or its run deleted). A job is never both: it leaves the queue by one rename."""
    waiting = next((e for e in entries(workspace) if e.entry_id == entry_id), None)
    return waiting or started_runs(workspace).get(entry_id)


def move(workspace: Path, entry_id: str, by: int) -> None:
    """Move an entry `by` places (negative: sooner), within the queue's ends."""
    with _lock(workspace):
        order = _ordered_ids(workspace)
        if entry_id not in order:
            raise _not_queued(entry_id)
        at = order.index(entry_id)
        order.insert(max(0, min(len(order) - 1, at + by)), order.pop(at))
        write_atomic(_order_file(workspace), json.dumps(order))


def remove(workspace: Path, entry_id: str) -> None:
    """Take a waiting entry off the queue. Only an id that is listed there is accepted: the id comes from a
    page or a terminal, and a path-like one ("../runs/x/job") must never name a file to delete."""
    with _lock(workspace):
        order = _ordered_ids(workspace)
        if entry_id not in order:
            raise _not_queued(entry_id)
        try:
            (queue_dir(workspace) / f"{entry_id}.yaml").unlink()
        except FileNotFoundError:  # deleted by hand since the listing
            raise _not_queued(entry_id) from None
        order.remove(entry_id)
        write_atomic(_order_file(workspace), json.dumps(order))


def take(workspace: Path, entry: QueueEntry, target: Path) -> bool:
    """Move the entry's file to `target` (a new run's job.yaml) in one rename; False when it is gone
    (removed, or taken by another scheduler)."""
    with _lock(workspace):
        try:
            entry.path.replace(target)
        except FileNotFoundError:
            return False
        write_atomic(_order_file(workspace), json.dumps(_ordered_ids(workspace)))
    return True
