"""Starting a sweep: plan and check every combination, then record the sweep and queue its runs."""
from __future__ import annotations

import time
from pathlib import Path

from core.runs import queue, scheduler
from core.sweeps.grid import Grid, SweepError
from core.sweeps.plan import plan
from core.sweeps.store import Sweep, new_id


def eval_problems(dataset: str, registry: str = "", policy=None) -> list[tuple[str, str]]:
    """Whether the eval dataset can be read here (checked before queuing, like the training data)."""
    from core.data.source import check_datasets

    if not dataset:
        return []
    return [("eval", "\n".join(report.lines())) for report in check_datasets(dataset, registry, policy=policy)
            if not report.usable]


def job_file_refusal(path: str | Path, policy=None) -> str | None:
    """Why the served page may not read this job or sweep file, or None: the project's presets always, other
    files where the server reads data (judged on the path alone)."""
    from core.paths import PRESETS_DIR
    from core.safety.access import inside, resolved

    if policy is None:
        return None
    try:
        if inside(resolved(path), (resolved(PRESETS_DIR),)):
            return None
    except ValueError:  # AccessDenied: a path that cannot be resolved; read_refusal says why
        pass
    return policy.read_refusal(path, "job")


def start_sweep(workspace: Path, job: dict, grid: Grid, eval_dataset: str = "", source: str = "",
                name: str = "", policy=None) -> Sweep:
    """Queue one run per combination, in grid order, and return the recorded sweep.

    Nothing is queued unless every combination passed (SweepError names each problem). The sweep file is
    written before the first entry is queued and again after each, so it always lists every entry it made."""
    combinations = plan(job, grid, policy=policy)
    problems = eval_problems(eval_dataset, str((job.get("data") or {}).get("registry") or ""), policy)
    if problems:
        raise SweepError(problems)
    sweep = Sweep(sweep_id=new_id(), job=job, grid=grid.lines, ties=grid.ties, eval=eval_dataset, source=source,
                  name=name, created_at=time.time(), planned=len(combinations))
    sweep.save(workspace)
    for combination in combinations:
        entry_id = queue.enqueue(workspace, combination.spec, start_scheduler=False)
        sweep.runs.append({"entry_id": entry_id, "settings": combination.settings})
        sweep.save(workspace)
    scheduler.ensure_running(workspace)
    return sweep


def lines(text: str) -> list[str]:
    """A box of lines (the Sweep panel's grid, ties, overrides) as its non-empty lines."""
    return [line.strip() for line in str(text or "").splitlines() if line.strip()]


def start_from_file(workspace: Path, path: str, grid_lines: list[str], tie_lines: list[str],
                    eval_dataset: str | None = None, overrides: list[str] = (), name: str = "",
                    replace_grid: bool = False, policy=None) -> Sweep:
    """A sweep from a job YAML or a sweep file, as `app.py sweep` and the Sweep panel start one.

    The given lines are added to a sweep file's grid and ties (replacing those of the same field), or with
    `replace_grid` are the whole grid (the panel shows the file's lines in its boxes, so they are the grid);
    `eval_dataset` None keeps the file's; `overrides` (KEY=VALUE) change the base job. `policy` is the web
    server's: the file must be a preset or lie where it reads, and the launch checks apply it."""
    from core.spec import SpecError
    from core.spec.parse import merge, parse_overrides
    from core.sweeps.preset import read_source

    refused = job_file_refusal(path, policy)
    if refused:
        raise SweepError([("job", refused)])
    source = read_source(path)
    try:
        job = merge(source.job, parse_overrides(list(overrides)))
    except SpecError as err:
        raise SweepError(err.problems) from None
    given = Grid.from_lines(grid_lines, tie_lines)
    grid = given if replace_grid else source.grid.merged(given)
    dataset = source.eval if eval_dataset is None else eval_dataset.strip()
    return start_sweep(workspace, job, grid, dataset, source=str(path), name=name or source.name, policy=policy)
