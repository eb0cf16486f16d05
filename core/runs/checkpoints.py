"""A run's checkpoints: which are whole, which one a resume continues from, and tidying before it does.

The Trainer writes `checkpoints/checkpoint-<step>/` file by file: the adapter, optimizer.pt, scheduler.pt,
rng_state.pth, and trainer_state.json last. A checkpoint is whole when trainer_state.json is there, reads
as JSON and names the folder's step, and the files written before it are there too; a trainer killed while
saving leaves a folder without it, which is never offered and is removed before a resume.
"""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from core.models.adapter import ADAPTER_WEIGHTS
from core.runs.folder import RunFolder, write_atomic

CHECKPOINT_NAME = re.compile(r"^checkpoint-(\d+)$")
RESUME_FILES = ("optimizer.pt", "scheduler.pt")


def checkpoint_step(folder: Path) -> int | None:
    match = CHECKPOINT_NAME.match(folder.name)
    return int(match.group(1)) if match else None


def is_whole(folder: Path) -> bool:
    step = checkpoint_step(folder)
    if step is None or not folder.is_dir():
        return False
    try:
        state = json.loads((folder / "trainer_state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (state.get("global_step") == step and any((folder / name).is_file() for name in ADAPTER_WEIGHTS)
            and all((folder / name).is_file() for name in RESUME_FILES))


def checkpoint_folders(run: RunFolder) -> list[tuple[int, Path]]:
    """Every checkpoint folder, whole or not, by step."""
    if not run.checkpoints_dir.is_dir():
        return []
    found = [(checkpoint_step(p), p) for p in run.checkpoints_dir.iterdir()]
    return sorted((step, p) for step, p in found if step is not None)


def whole_checkpoints(run: RunFolder) -> list[tuple[int, Path]]:
    return [(step, p) for step, p in checkpoint_folders(run) if is_whole(p)]


def last_checkpoint(run: RunFolder) -> tuple[int, Path] | None:
    """(step, folder) of the newest whole checkpoint, or None."""
    whole = whole_checkpoints(run)
    return whole[-1] if whole else None


def remove_after(run: RunFolder, step: int) -> list[str]:
    """Remove checkpoint folders that are not whole or lie past `step` (a resume continues from `step`);
    returns their names."""
    removed = []
    for at, folder in checkpoint_folders(run):
        if at > step or not is_whole(folder):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder.name)
    return removed


def cut_metrics_after(run: RunFolder, step: int) -> int:
    """Drop metrics records past `step`, so a resumed run logs each step exactly once; returns how many."""
    records, _ = run.read_metrics()
    kept = [r for r in records if (r.get("step") or 0) <= step]
    if len(kept) != len(records):
        write_atomic(run.metrics_file, "".join(json.dumps(r) + "\n" for r in kept))
    return len(records) - len(kept)
