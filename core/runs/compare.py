"""Compare runs: their curves on one x axis, the settings in which their jobs differ, their final figures.

Rules only; webui/charts.py draws the curves. Jobs are opened by parsing (never the launch checks), so a
run whose dataset moved still compares; a job.yaml that no longer parses is compared as written.
"""
from __future__ import annotations

from pathlib import Path

import yaml

from core.runs.folder import RunFolder

# x axis name -> the metrics field it reads
X_AXES = {"step": "step", "tokens": "tokens_seen", "time": "elapsed_s"}
CURVES = ("loss", "eval_loss", "learning_rate", "tokens_per_second", "memory_mb")


def curves(run: RunFolder, x_axis: str = "step") -> dict[str, tuple[list, list]]:
    """metric -> (xs, ys) of one run, for every metric in CURVES, on the chosen x axis. An eval record (it
    carries a step only) takes the x of the training record of its step; a record with no x at all (e.g.
    tokens seen in runs older than that field) is left out."""
    x_key = X_AXES[x_axis]
    records, _ = run.read_metrics()
    at_step = {r["step"]: r[x_key] for r in records if r.get(x_key) is not None and r.get("step") is not None}

    def x_of(record):
        return record[x_key] if record.get(x_key) is not None else at_step.get(record.get("step"))

    drawn = {}
    for metric in CURVES:
        points = [(x_of(r), r[metric]) for r in records if r.get(metric) is not None and x_of(r) is not None]
        drawn[metric] = ([p[0] for p in points], [p[1] for p in points])
    return drawn


def flat_job(run: RunFolder) -> dict[str, str]:
    """The run's job as dotted field -> value text, defaults filled in where the job parses."""
    from core.spec import SpecError, load_spec

    try:
        data = load_spec(str(run.job)).to_dict()
    except (SpecError, OSError):
        try:
            data = yaml.safe_load(Path(run.job).read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError):
            data = {}
    flat = {}
    for section, values in data.items():
        if isinstance(values, dict):
            for key, value in values.items():
                flat[f"{section}.{key}"] = ", ".join(map(str, value)) if isinstance(value, list) else str(value)
        else:
            flat[section] = str(values)
    return flat


def differing_settings(runs: list[RunFolder]) -> list[tuple[str, list[str]]]:
    """(dotted field, one value per run) for every field whose value is not the same in all the runs;
    a field a run's method does not read shows as "—"."""
    jobs = [flat_job(run) for run in runs]
    fields = []
    for job in jobs:
        fields += [f for f in job if f not in fields]
    rows = []
    for name in fields:
        values = [job.get(name, "—") for job in jobs]
        if len(set(values)) > 1:
            rows.append((name, values))
    return rows
