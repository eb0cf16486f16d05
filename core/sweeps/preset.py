"""Sweep files (presets/sweeps/*.yaml): a job, its grid, ties and eval dataset in one documented file.

    job: {method: lora, data: {...}, lora: {...}, train: {...}}   the base job, as in a job YAML
    grid: {method: [lora, qlora], lora.r: [8, 16]}                 field -> values
    ties: {lora.alpha: 2*lora.r}                                   field -> expression (optional)
    eval: arithmetic_2digit_test                                   dataset scored after each run (optional)
    name: a short title (optional)

`app.py sweep FILE` accepts a sweep file or a plain job YAML; with a job YAML the grid comes from --grid.
Lines given on the command line are added to the file's, replacing those of the same field.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from core.spec import SpecError, parse_yaml_text
from core.spec.parse import read_yaml
from core.sweeps.grid import Grid, SweepError

SWEEP_KEYS = ("job", "grid", "ties", "eval", "name")


@dataclass
class SweepSource:
    job: dict
    grid: Grid = field(default_factory=Grid)
    eval: str = ""
    name: str = ""


def is_sweep_file(data: dict) -> bool:
    return "grid" in data and "job" in data


def _values(value) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def from_data(data: dict, source: str) -> SweepSource:
    """A job YAML's data as a sweep source without a grid, or a sweep file's data as a whole sweep."""
    if not is_sweep_file(data):
        return SweepSource(job=data)
    unknown = [k for k in data if k not in SWEEP_KEYS]
    if unknown:
        raise SweepError([(source, f"unknown key {unknown[0]!r} in a sweep file (it holds {', '.join(SWEEP_KEYS)})")])
    job, grid, ties = data.get("job") or {}, data.get("grid") or {}, data.get("ties") or {}
    for key, value in (("job", job), ("grid", grid), ("ties", ties)):
        if not isinstance(value, dict):
            raise SweepError([(f"{source} {key}", "must be a mapping")])
    return SweepSource(job=job, grid=Grid({str(k): _values(v) for k, v in grid.items()},
                                          {str(k): str(v) for k, v in ties.items()}),
                       eval=str(data.get("eval") or ""), name=str(data.get("name") or ""))


def read_source(path: str | Path) -> SweepSource:
    try:
        return from_data(read_yaml(str(path)), str(path))
    except SpecError as err:
        raise SweepError(err.problems) from None


def source_from_text(text: str, source: str) -> SweepSource:
    try:
        return from_data(parse_yaml_text(text, source), source)
    except SpecError as err:
        raise SweepError(err.problems) from None
