"""Evaluation of a sweep's finished runs: THE one place where it is requested and its result read.

The result of evaluating a run on a dataset is `<run>/eval/<dataset>.json` (issue 14; written by the
evaluator, core/eval). Its "models" hold one set of figures per model ("base": adapter off, "tuned":
adapter on), e.g. {"loss", "perplexity", "exact_match", "contains", "rouge_l"}; the sweep table shows
the tuned model's.

`evaluation_of` is called for every finished run each time a sweep's table is built (the Sweep panel
polls it, `app.py sweeps` prints it): it returns the scores when the file exists, and otherwise asks the
evaluator, once, through `request_evaluation`. That function is where the evaluator is connected.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from core.runs.job_folder import write_atomic

NOT_SCORES = ("tokens",)  # counts beside the figures, not scores
REQUEST_NAME = ".sweep-request-{name}.json"  # in <run>/eval/: the evaluation this sweep asked for
REQUEST_LOCK = ".eval-request.lock"  # in the workspace: held while one evaluation is chosen and requested


def result_file(run, dataset: str) -> Path:
    """`<run>/eval/<dataset>.json`, named exactly as the evaluator saves it (a file as dataset: its stem)."""
    return Path(run.path) / "eval" / f"{file_stem(dataset)}.json"


def file_stem(dataset: str) -> str:
    from core.eval.heldout import source_name
    from core.eval.results import file_name

    return file_name(source_name(dataset))


def read_scores(run, dataset: str) -> dict | None:
    """The tuned model's figures from the run's result file, or None while there is none (or it is unreadable)."""
    try:
        result = json.loads(result_file(run, dataset).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    tuned = (result.get("models") or {}).get("tuned") if isinstance(result, dict) else None
    if not isinstance(tuned, dict):
        return None
    return {k: v for k, v in tuned.items()
            if k not in NOT_SCORES and isinstance(v, (int, float)) and not isinstance(v, bool)}


def request_evaluation(workspace: Path, run, dataset: str) -> dict:
    """Ask the evaluator to evaluate a finished run on `dataset`, writing `<run>/eval/<dataset>.json`.

    Returns what became of the request: {"state": "requested", "job": the evaluation job folder} or
    {"state": "unavailable", "reason"}. This is the evaluator hook: it starts core/eval's detached
    evaluation process (core.eval.job.start with EvalOptions(run=..., dataset=...)); a refusal is recorded
    as unavailable with its reason, and the table says so."""
    from core.eval.job import start
    from core.eval.options import EvalOptions

    try:
        job = start(EvalOptions(run=str(run.path), dataset=dataset), workspace)
    except Exception as err:  # the evaluator refuses with its own errors; the table shows the sentence
        return {"state": "unavailable", "reason": str(err)}
    return {"state": "requested", "job": str(job.path)}


def _request_file(run, dataset: str) -> Path:
    return Path(run.path) / "eval" / REQUEST_NAME.format(name=file_stem(dataset))


def evaluation_of(workspace: Path, run, dataset: str, request: bool = True) -> dict:
    """What the table shows for a finished run's evaluation on `dataset`:
    {"state": "done", "scores": {...}} when its result file exists; else, the first time (with `request`),
    the evaluation is requested and the answer recorded beside the results, so it is asked for only once
    across pages, terminals and restarts: {"state": "requested" | "unavailable", ...}; {"state": "waiting"}
    while another evaluation of the workspace runs (it is requested at a later look); {"state": "none"}
    when nothing was asked yet."""
    from core.eval.job import active_jobs
    from core.runs.job_folder import file_lock

    scores = read_scores(run, dataset)
    if scores is not None:
        return {"state": "done", "scores": scores}
    asked = _asked(run, dataset)
    if asked is not None:
        return _progress(asked)
    if not request:
        return {"state": "none"}
    with file_lock(Path(workspace) / REQUEST_LOCK):
        asked = _asked(run, dataset)  # another page or terminal may have asked while this one waited
        if asked is not None:
            return _progress(asked)
        # One at a time: each evaluation loads a model and uses every core, and a sweep's runs finish one
        # after another. The 2x2 sweep test (tiny model, four evaluations of 4 samples) took 124 s with all four
        # at once, 70 s one by one (2-core AVX2 EPYC).
        if active_jobs(workspace):
            return {"state": "waiting"}
        answer = {**request_evaluation(workspace, run, dataset), "at": time.time()}
        marker = _request_file(run, dataset)
        marker.parent.mkdir(parents=True, exist_ok=True)  # recorded, so it is asked once
        write_atomic(marker, json.dumps(answer))
    return answer


def _asked(run, dataset: str) -> dict | None:
    try:
        return json.loads(_request_file(run, dataset).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _progress(asked: dict) -> dict:
    """A requested evaluation as its job folder tells it: still running, or failed with its error."""
    if asked.get("state") != "requested" or not asked.get("job"):
        return asked
    try:
        status = json.loads((Path(asked["job"]) / "status.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return asked
    if status.get("state") in ("failed", "cancelled"):
        error = status.get("error") or {}
        return {**asked, "state": "failed",
                "reason": error.get("message") if isinstance(error, dict) else str(error or status["state"])}
    return {**asked, "progress": status.get("progress")}
