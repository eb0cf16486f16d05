"""Every combination of a sweep made into a job and checked, before anything is queued.

Each combination is parsed (keys, types, bounds, the method's rules) and launch-checked (model, data,
device) exactly as a single queued job is; problems name the combination and the field, and all of them are
reported together. Only a sweep with no problem at all reaches the queue.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from core.spec import JobSpec, SpecError, check_launch, spec_from_dict
from core.sweeps.grid import Grid, SweepError, evaluate_tie


@dataclass
class Combination:
    settings: dict[str, Any]   # the swept and tied fields and their values in this combination
    spec: JobSpec


def label(settings: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in settings.items())


def value_in(job: dict, dotted: str):
    """A field's value in plain job data, else the spec's default."""
    if dotted == "method":
        return job.get("method") or JobSpec().method
    section, key = dotted.split(".", 1)
    values = job.get(section)
    if isinstance(values, dict) and key in values:
        return values[key]
    return JobSpec().get(dotted)


def with_settings(job: dict, settings: dict[str, Any]) -> dict:
    out = copy.deepcopy(job)
    for dotted, value in settings.items():
        if dotted == "method":
            out["method"] = value
            continue
        section, key = dotted.split(".", 1)
        if not isinstance(out.get(section), dict):
            out[section] = {}
        out[section][key] = value
    return out


def plan(job: dict, grid: Grid, launch: bool = True, policy=None) -> list[Combination]:
    """The sweep's combinations in queue order, each a parsed (and with `launch`, launch-checked) spec.
    Raises SweepError naming every bad grid line, tie and combination. `policy` is the web server's
    (core.safety.access.AccessPolicy), handed to the launch checks as the Train tab's Start does."""
    problems = grid.problems()
    if problems:
        raise SweepError(problems)
    planned, problems = [], []
    for number, chosen in enumerate(grid.combinations(), start=1):
        settings = dict(chosen)
        where = f"combination {number} ({label(chosen)})"
        try:
            for name, expression in grid.ties.items():
                settings[name] = evaluate_tie(expression, lambda d, known=settings: known[d] if d in known
                                              else value_in(job, d))
        except ValueError as err:
            problems.append((where, f"tie: {err}"))
            continue
        try:
            spec = spec_from_dict(with_settings(job, settings))
            if launch:
                check_launch(spec, policy)
        except SpecError as err:
            problems.extend((f"{where} {field}".rstrip(), message) for field, message in err.problems)
            continue
        planned.append(Combination(settings, spec))
    if problems:
        raise SweepError(problems)
    return planned
