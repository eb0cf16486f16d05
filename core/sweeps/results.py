"""A sweep's results table: one row per combination, read from the runs' own files each time.

Settings come from the sweep file; state, losses, peak memory and time from the run folder through the run
history (core/runs/history.py reads status.json and metrics.jsonl, re-reading metrics only when they
changed); eval scores from `<run>/eval/<dataset>.json` (evaluation.py). A row whose entry still waits shows
its queue position; one whose entry was removed from the queue, or whose run was deleted, says so.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from core.runs import history, queue
from core.runs.folder import ACTIVE_STATES, RunFolder
from core.sweeps import evaluation
from core.sweeps.store import Sweep

SCORE_ORDER = ("exact_match", "contains", "rouge_l", "loss", "perplexity")  # how score columns are ordered


@dataclass
class SweepRow:
    number: int
    settings: dict
    entry_id: str
    state: str                      # queued, running, completed, failed, stopped, ... or "removed"
    run_id: str | None = None
    run_path: str | None = None
    queue_position: int | None = None
    step: int = 0
    total_steps: int = 0
    final_loss: float | None = None
    eval_loss: float | None = None  # the run's own eval split (data.eval_split), last measured
    peak_memory_mb: float | None = None
    duration_s: float | None = None
    reason: str | None = None       # why a run failed, in plain words
    evaluation: dict = field(default_factory=dict)  # evaluation.evaluation_of's answer ({} without --eval)

    @property
    def scores(self) -> dict:
        return self.evaluation.get("scores") or {}

    def to_json(self) -> dict:
        return {**asdict(self), "scores": self.scores}


def sweep_rows(workspace: Path, sweep: Sweep, request_eval: bool = True) -> list[SweepRow]:
    """The table's rows in queue order. With `request_eval`, a finished run without its eval result has it
    requested (once; see evaluation.evaluation_of)."""
    waiting = {e.entry_id: e for e in queue.entries(workspace)}
    started = queue.started_runs(workspace) if len(waiting) < len(sweep.runs) else {}
    rows = []
    for number, item in enumerate(sweep.runs, start=1):
        entry_id = item["entry_id"]
        row = SweepRow(number=number, settings=item.get("settings") or {}, entry_id=entry_id, state="removed")
        if entry_id in waiting:
            row.state, row.queue_position = "queued", waiting[entry_id].position
        elif entry_id in started:
            _fill_from_run(row, workspace, started[entry_id], sweep.eval, request_eval)
        rows.append(row)
    return rows


def _fill_from_run(row: SweepRow, workspace: Path, run: RunFolder, dataset: str, request_eval: bool) -> None:
    facts = history.run_row(run)
    row.state, row.run_id, row.run_path = facts.state, facts.run_id, facts.path
    row.step, row.total_steps, row.reason = facts.step, facts.total_steps, facts.reason
    row.final_loss, row.eval_loss = facts.final_loss, facts.final_eval_loss
    row.peak_memory_mb, row.duration_s = facts.peak_memory_mb, facts.duration_s
    if dataset and facts.state == "completed":
        row.evaluation = evaluation.evaluation_of(workspace, run, dataset, request=request_eval)


def score_names(rows: list[SweepRow]) -> list[str]:
    """The score columns the rows have, in a fixed order (known names first)."""
    names = {name for row in rows for name in row.scores}
    return [n for n in SCORE_ORDER if n in names] + sorted(names - set(SCORE_ORDER))


def is_finished(rows: list[SweepRow]) -> bool:
    return all(row.state not in ACTIVE_STATES for row in rows)


FIXED_COLUMNS = ("state", "final_loss", "eval_loss")
TAIL_COLUMNS = ("peak_memory_mb", "duration_s", "run")


def columns(sweep: Sweep, rows: list[SweepRow]) -> list[str]:
    """The table's columns: '#', the swept fields, state and losses, one 'score:<name>' per eval figure, then
    peak memory, time and the run id. The UI translates the fixed names; field names are shown as they are."""
    evaluated = ["evaluation", *(f"score:{n}" for n in score_names(rows))] if sweep.eval else []
    return ["#", *sweep.swept, *FIXED_COLUMNS, *evaluated, *TAIL_COLUMNS]


def cell(row: SweepRow, column: str):
    """The raw value of one cell (numbers stay numbers, for charts; the views format them)."""
    if column == "#":
        return row.number
    if column == "run":
        return row.run_id or row.entry_id
    if column == "evaluation":
        return row.evaluation.get("state")
    if column.startswith("score:"):
        return row.scores.get(column[len("score:"):])
    if column in row.settings:
        return row.settings[column]
    return getattr(row, column, None)


def chart_points(rows: list[SweepRow], field_name: str) -> tuple[list, dict[str, list], list]:
    """(x values, {figure: y values}, peak memory) for the runs that reported figures, against one swept field:
    the eval scores, the eval loss and the final train loss each as one series."""
    shown = [row for row in rows if row.final_loss is not None or row.peak_memory_mb is not None]
    xs = [row.settings.get(field_name) for row in shown]
    series = {f"score:{name}": [row.scores.get(name) for row in shown] for name in score_names(shown)}
    series["eval_loss"] = [row.eval_loss for row in shown]
    series["final_loss"] = [row.final_loss for row in shown]
    return xs, {k: v for k, v in series.items() if any(y is not None for y in v)}, [r.peak_memory_mb for r in shown]
