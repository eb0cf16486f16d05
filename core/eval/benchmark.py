"""Benchmarks through lm-evaluation-harness (lm-eval), on the base model and on base + adapter (its HF model's
`peft=` argument), fully offline: tasks come from local YAML files only (the bundled arithmetic tasks in
core/eval/tasks/, or a task file or folder the user names) and data from local files.

A task's relative data paths are read from its own folder.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

import yaml

TASKS_DIR = Path(__file__).parent / "tasks"
BUNDLED = {"arithmetic_2digit": "arithmetic_2digit.yaml", "arithmetic_4digit": "arithmetic_4digit.yaml"}
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
               "HF_EVALUATE_OFFLINE": "1"}


class _TaskLoader(yaml.SafeLoader):
    """Reads task YAML for its names only: lm-eval's `!function` tags are kept as plain strings."""


_TaskLoader.add_multi_constructor("!", lambda loader, suffix, node: None)


def task_files(benchmark: str) -> tuple[Path, list[Path]]:
    """(folder lm-eval includes, task files) for a bundled name, a YAML file or a folder; ValueError otherwise."""
    if benchmark in BUNDLED:
        return TASKS_DIR, [TASKS_DIR / BUNDLED[benchmark]]
    path = Path(benchmark).expanduser().resolve()
    if path.is_file() and path.suffix in (".yaml", ".yml"):
        return path.parent, [path]
    if path.is_dir():
        files = sorted(p for p in path.rglob("*.y*ml") if p.suffix in (".yaml", ".yml"))
        if files:
            return path, files
        raise ValueError(f"the folder {path} holds no task YAML file")
    raise ValueError(f"'{benchmark}' is neither a bundled task ({', '.join(BUNDLED)}) nor a task YAML file or folder")


def task_names(benchmark: str) -> list[str]:
    """The lm-eval task (and group) names a benchmark runs; ValueError naming the file when one is unreadable."""
    _, files = task_files(benchmark)
    names = []
    for file in files:
        try:
            config = yaml.load(file.read_text(encoding="utf-8"), Loader=_TaskLoader) or {}
        except (OSError, yaml.YAMLError) as err:
            raise ValueError(f"{file}: not a readable task YAML ({err})") from None
        if not isinstance(config, dict):
            raise ValueError(f"{file}: a task YAML must hold a mapping")
        name = config.get("group") if config.get("task") is None else config.get("task")
        if isinstance(name, str):
            names.append(name)
    if not names:
        raise ValueError(f"no task name found in {', '.join(map(str, files))} (each task YAML needs a 'task' key)")
    return names


@contextlib.contextmanager
def offline_in(folder: Path):
    """Offline for everything lm-eval, datasets and transformers do, reading relative paths from `folder`."""
    saved_env = {k: os.environ.get(k) for k in OFFLINE_ENV}
    saved_cwd = os.getcwd()
    os.environ.update(OFFLINE_ENV)
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(saved_cwd)
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def scores_of(results: dict, tasks: list[str]) -> dict[str, float]:
    """{"task/metric,filter": value} of the numeric scores lm-eval reported (standard errors left out)."""
    out = {}
    for task in tasks:
        for key, value in (results.get("results", {}).get(task) or {}).items():
            # Scores are keyed "metric,filter"; counts such as sample_len and the standard errors are left out.
            if isinstance(value, (int, float)) and "," in key and "_stderr" not in key:
                out[f"{task}/{key}"] = float(value)
    return out


def answers_of(results: dict, tasks: list[str], keep: int = 5) -> list[dict]:
    """The first `keep` documents of each task with the model's raw answer, to show beside the scores."""
    out = []
    for task in tasks:
        for sample in (results.get("samples", {}).get(task) or [])[:keep]:
            resps = sample.get("resps") or [[""]]
            out.append({"task": task, "target": str(sample.get("target", "")), "answer": str(resps[0][0])})
    return out


def run_lm_eval(model_path: str, tokenizer_path: str, adapter: str | None, benchmark: str, limit: int,
                device: str = "cpu") -> dict:
    """One lm-eval run of `benchmark`: {"scores": {...}, "answers": [...], "documents": {task: n}}.
    With `adapter` the base model is loaded with that PEFT adapter on top (lm-eval's `peft=`)."""
    import lm_eval
    from lm_eval.tasks import TaskManager

    folder, _ = task_files(benchmark)
    names = task_names(benchmark)
    args = {"pretrained": model_path, "tokenizer": tokenizer_path, "dtype": "float32", "device": device,
            "batch_size": 1}
    if adapter:
        args["peft"] = adapter
    with offline_in(folder):
        results = lm_eval.simple_evaluate(
            model="hf", model_args=args, tasks=names, limit=limit or None, log_samples=True,
            apply_chat_template=True, task_manager=TaskManager(include_path=str(folder), include_defaults=False),
            random_seed=0, numpy_random_seed=0, torch_random_seed=0, fewshot_random_seed=0)
    documents = {task: int((results.get("n-samples", {}).get(task) or {}).get("effective", 0)) for task in names}
    return {"scores": scores_of(results, names), "answers": answers_of(results, names), "documents": documents}


def compare(base: dict, tuned: dict | None) -> dict:
    """Both runs' scores and their difference (tuned - base) per metric, and the first answers side by side."""
    rows = []
    for key, value in base["scores"].items():
        other = (tuned or {}).get("scores", {}).get(key)
        rows.append({"metric": key, "base": value, "tuned": other,
                     "difference": None if other is None else other - value})
    answers = [{**a, "base": a.pop("answer"), "tuned": t["answer"] if t else None}
               for a, t in zip(base["answers"], (tuned or {}).get("answers") or [None] * len(base["answers"]))]
    return {"rows": rows, "documents": base["documents"], "answers": answers}
