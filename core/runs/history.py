"""Every run of a workspace as a row of facts, and what a user may do to a past run: rename it, note
something on it, delete it.

A row is read from the run folder alone (status.json, job.yaml read as plain YAML, metrics.jsonl, the
adapter's files), so runs from the UI, the CLI and the queue, old and new, look the same. Metrics are
summarised once per version of the file (its size and time), so a table refreshed every few seconds
does not re-read finished runs.
"""
from __future__ import annotations

import os
import shutil
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

from core.models.adapter import ADAPTER_WEIGHTS, unusable_reason
from core.runs import failure, queue
from core.runs.folder import ACTIVE_STATES, RunFolder, list_runs, runs_dir


class RunNotFound(LookupError):
    """No run matches what the user named."""


class RunBusy(RuntimeError):
    """The run is active: it cannot be deleted (stop or kill it first)."""


@dataclass
class RunRow:
    run_id: str
    name: str
    path: str
    state: str
    reason: str | None          # the failure reason in plain words (None when there is none)
    reason_kind: str | None
    method: str
    model: str
    dataset: str
    started_at: float | None
    duration_s: float | None
    step: int
    total_steps: int
    final_loss: float | None
    final_eval_loss: float | None
    best_eval_loss: float | None
    tokens_per_second: float | None
    peak_memory_mb: float | None
    adapter_bytes: int | None   # its weights' size; None when the run has no usable adapter
    note: str
    resumable: bool
    attempts: int
    queue_position: int | None = None  # for a job still waiting in the queue

    def to_json(self) -> dict:
        return asdict(self)

    @property
    def duration_text(self) -> str:
        return clock(self.duration_s)


# --- reading ---------------------------------------------------------------------------------------------

_job_cache: dict[str, tuple[float, dict]] = {}
_metrics_cache: dict[str, tuple[tuple[int, float], dict]] = {}


def job_facts(path: Path) -> dict:
    """method, model and dataset of a job file, read as plain YAML (a record opens whatever its state)."""
    try:
        stamp = path.stat().st_mtime
    except FileNotFoundError:
        return {"method": "?", "model": "?", "dataset": "?"}
    cached = _job_cache.get(str(path))
    if cached and cached[0] == stamp:
        return cached[1]
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        data = {}
    data = data if isinstance(data, dict) else {}
    facts = {"method": str(data.get("method") or "lora"),
             "model": str((data.get("model") or {}).get("path") or ""),
             "dataset": str((data.get("data") or {}).get("dataset") or "")}
    _job_cache[str(path)] = (stamp, facts)
    return facts


def metrics_summary(run: RunFolder) -> dict:
    """Final and best figures of a run's metrics, re-read only when the file changed."""
    try:
        info = run.metrics_file.stat()
        stamp = (info.st_size, info.st_mtime)
    except FileNotFoundError:
        return {}
    cached = _metrics_cache.get(str(run.path))
    if cached and cached[0] == stamp:
        return cached[1]
    records, _ = run.read_metrics()
    losses = [r["loss"] for r in records if r.get("loss") is not None]
    evals = [r["eval_loss"] for r in records if r.get("eval_loss") is not None]
    speeds = [r["tokens_per_second"] for r in records if r.get("tokens_per_second")]
    memory = [r["memory_mb"] for r in records if r.get("memory_mb")]
    summary = {"final_loss": losses[-1] if losses else None,
               "final_eval_loss": evals[-1] if evals else None,
               "best_eval_loss": min(evals) if evals else None,
               # the median: the first step of each attempt includes warm-up and is not the run's pace
               "tokens_per_second": round(statistics.median(speeds), 1) if speeds else None,
               "peak_memory_mb": max(memory) if memory else None}
    _metrics_cache[str(run.path)] = (stamp, summary)
    return summary


def folder_size(path: Path) -> int:
    """Bytes held by the files under `path` (links not followed)."""
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except FileNotFoundError:
                pass
    return total


def adapter_weights_size(run: RunFolder) -> int:
    """Bytes of the adapter's weights (what its rank and targets cost; the tokenizer beside them is not counted)."""
    return sum(p.stat().st_size for p in (run.adapter_dir / name for name in ADAPTER_WEIGHTS) if p.is_file())


def clock(seconds: float | None) -> str:
    """A duration as h:mm:ss ("" when unknown)."""
    if seconds is None:
        return ""
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def run_times(status: dict, now: float | None = None) -> tuple[float | None, float | None]:
    """(first launch, time spent training over every attempt) of a run."""
    now = now or time.time()
    attempts = status.get("attempts") or []
    if not attempts:
        started = status.get("started_at")
        end = status.get("ended_at") or (now if status["state"] in ACTIVE_STATES else None)
        return started, (end - started) if started and end else None
    total = 0.0
    for index, attempt in enumerate(attempts):
        begun = attempt.get("launched_at")
        last = index == len(attempts) - 1
        end = (status.get("ended_at") or (now if status["state"] in ACTIVE_STATES else None)) if last \
            else attempt.get("ended_at")
        if begun and end:
            total += max(end - begun, 0.0)
    return attempts[0].get("launched_at"), total


def run_row(run: RunFolder) -> RunRow:
    from core.runs.resume import why_not_resumable

    status = run.status()
    reason = failure.explain(status, run.log_tail(8000) if status.get("error") else "")
    started, duration = run_times(status)
    adapter = None if unusable_reason(run) else adapter_weights_size(run)
    return RunRow(
        run_id=run.run_id, name=status.get("name") or run.run_id, path=str(run.path), state=status["state"],
        reason=reason.sentence if reason else None, reason_kind=reason.kind if reason else None,
        **job_facts(run.job), started_at=started, duration_s=duration, step=status.get("step") or 0,
        total_steps=status.get("total_steps") or 0, **metrics_summary(run) or dict.fromkeys(
            ("final_loss", "final_eval_loss", "best_eval_loss", "tokens_per_second", "peak_memory_mb")),
        adapter_bytes=adapter, note=status.get("note") or "", resumable=why_not_resumable(run, status) is None,
        attempts=len(status.get("attempts") or []) or 1)


def queue_row(entry: queue.QueueEntry) -> RunRow:
    return RunRow(
        run_id=entry.entry_id, name=entry.entry_id, path=str(entry.path), state="queued", reason=None,
        reason_kind=None, **job_facts(entry.path), started_at=None, duration_s=None, step=0, total_steps=0,
        final_loss=None, final_eval_loss=None, best_eval_loss=None, tokens_per_second=None, peak_memory_mb=None,
        adapter_bytes=None, note="", resumable=False, attempts=0, queue_position=entry.position)


def all_rows(workspace: Path) -> list[RunRow]:
    """Jobs waiting in the queue (next first), then every run (newest first)."""
    return [queue_row(e) for e in queue.entries(workspace)] + [run_row(r) for r in list_runs(workspace)]


def workspace_run(workspace: Path, path: str | None) -> RunFolder | None:
    """The run at `path` when it is a run folder of `workspace` (directly in its runs/), else None: the Runs
    tab acts (opens, renames, deletes) only on its own workspace's runs, whatever path a request carries."""
    if not path:
        return None
    try:
        where = Path(path).resolve()
    except (OSError, RuntimeError, ValueError):
        return None
    if where.parent != runs_dir(workspace).resolve() or not (where / "job.yaml").is_file():
        return None
    return RunFolder(where)


def find_run(workspace: Path, ref: str) -> RunFolder:
    """The run named by a folder path, a run id, or the start of exactly one run id."""
    path = Path(ref).expanduser()
    if (path / "job.yaml").is_file():
        return RunFolder(path.resolve())
    root = runs_dir(workspace)
    if (root / ref / "job.yaml").is_file():
        return RunFolder(root / ref)
    matches = [run for run in list_runs(workspace) if run.run_id.startswith(ref)]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise RunNotFound(f"{ref!r} names {len(matches)} runs: {', '.join(r.run_id for r in matches[:5])}")
    raise RunNotFound(f"no run {ref!r} in {root} (give a run id from `app.py runs` or a run folder)")


# --- changing ------------------------------------------------------------------------------------------

def rename(run: RunFolder, name: str) -> str:
    """Give the run a name to show instead of its id (empty: back to the id); returns the name shown."""
    name = " ".join(str(name or "").split())[:120]
    run.write_status(name=name or None)
    return name or run.run_id


def set_note(run: RunFolder, note: str) -> None:
    run.write_status(note=str(note or "").strip()[:4000] or None)


def delete(run: RunFolder) -> int:
    """Delete a run that is not active; returns the bytes freed. The folder is renamed away first, so
    it disappears from every list at once even while its files are still being removed."""
    from core.runs.runner import start_lock

    with start_lock(run.path.parent.parent):  # no resume can begin between the check and the rename
        if not (run.path / "job.yaml").is_file():
            raise RunNotFound(f"no run at {run.path}")
        if run.is_active():
            raise RunBusy(f"run {run.run_id} is {run.status()['state']}; stop or kill it before deleting it")
        size = folder_size(run.path)
        doomed = run.path.with_name(f".deleting-{run.run_id}")
        os.replace(run.path, doomed)
    shutil.rmtree(doomed, ignore_errors=True)
    _metrics_cache.pop(str(run.path), None)
    return size
