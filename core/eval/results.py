"""Evaluation results kept in the run folder, beside what the trainer wrote:

    <run>/eval/<dataset>.json          base against tuned on held-out samples (core/eval/evaluate.py)
    <run>/eval/lm-eval-<task>.json     an lm-evaluation-harness benchmark on both (core/eval/benchmark.py)

Each file is written whole (temporary name, then rename), so a reader never sees half of one.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from core.runs.job_folder import write_atomic

BENCHMARK_PREFIX = "lm-eval-"


def eval_dir(run) -> Path:
    return Path(run.path) / "eval"


def file_name(name: str) -> str:
    return re.sub(r"[^\w.-]+", "_", name).strip("._") or "dataset"


def save(run, name: str, result: dict) -> Path:
    folder = eval_dir(run)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{file_name(name)}.json"
    write_atomic(path, json.dumps(result, indent=1, ensure_ascii=False))
    return path


def load_all(run) -> dict[str, dict]:
    """{file stem: result} of every saved result of `run`, newest first; unreadable files are skipped."""
    files = sorted(eval_dir(run).glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True)
    out = {}
    for path in files:
        try:
            out[path.stem] = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
    return out
