"""Eval scores in a sweep's table: read from `<run>/eval/<dataset>.json` once the evaluator wrote it, and the
evaluation of a finished run requested exactly once (across refreshes, pages and restarts), never made up."""
from __future__ import annotations

import json
import shutil

import pytest

from core.runs.folder import RunFolder, runs_dir
from core.sweeps import evaluation
from core.sweeps.results import cell, columns, sweep_rows
from core.sweeps.store import Sweep

# What the evaluator writes (core/eval): one set of figures per model, the tuned model's shown in the table.
RESULT = {"dataset": "identity_heldout", "samples": 6, "models": {
    "base": {"loss": 3.1, "perplexity": 22.2, "tokens": 90, "exact_match": 0.0, "contains": 0.0, "rouge_l": 0.1},
    "tuned": {"loss": 1.2, "perplexity": 3.32, "tokens": 90, "exact_match": 0.5, "contains": 0.75, "rouge_l": 0.6}},
    "rows": []}


@pytest.fixture
def sweep_of_one(tiny_runs, tmp_path):
    """A workspace holding a copy of the session's finished tiny run as the one run of a sweep with --eval."""
    ws = tmp_path / "ws"
    run = RunFolder(runs_dir(ws) / "run-1")
    shutil.copytree(tiny_runs["lora"].path, run.path)
    run.write_status(queued_as="entry-1")
    sweep = Sweep(sweep_id="s1", job={}, grid={"lora.r": [4]}, eval="identity_heldout",
                  runs=[{"entry_id": "entry-1", "settings": {"lora.r": 4}}])
    sweep.save(ws)
    return ws, run, sweep


def test_scores_come_from_the_runs_eval_file(sweep_of_one, monkeypatch):
    ws, run, sweep = sweep_of_one
    asked = []
    monkeypatch.setattr(evaluation, "request_evaluation",
                        lambda workspace, r, dataset: asked.append((r.path, dataset)) or {"state": "requested",
                                                                                           "job": str(ws / "nojob")})
    [row] = sweep_rows(ws, sweep)
    assert row.state == "completed" and row.scores == {} and row.evaluation["state"] == "requested"
    assert asked == [(run.path, "identity_heldout")]
    sweep_rows(ws, sweep)
    assert len(asked) == 1, "asked once, not at every refresh"
    assert "score:exact_match" not in columns(sweep, [row])

    (run.path / "eval").mkdir(exist_ok=True)
    (run.path / "eval" / "identity_heldout.json").write_text(json.dumps(RESULT))
    [row] = sweep_rows(ws, sweep)
    assert row.evaluation["state"] == "done"
    assert row.scores == {"loss": 1.2, "perplexity": 3.32, "exact_match": 0.5, "contains": 0.75, "rouge_l": 0.6}
    heads = columns(sweep, [row])
    assert heads[heads.index("eval_loss") + 1:heads.index("peak_memory_mb")] == [
        "evaluation", "score:exact_match", "score:contains", "score:rouge_l", "score:loss", "score:perplexity"]
    assert cell(row, "score:exact_match") == 0.5 and cell(row, "lora.r") == 4
    assert row.to_json()["scores"]["contains"] == 0.75


def test_without_an_evaluator_the_table_says_so(sweep_of_one, monkeypatch):
    ws, run, sweep = sweep_of_one
    monkeypatch.setattr(evaluation, "request_evaluation",
                        lambda workspace, r, dataset: {"state": "unavailable", "reason": "the dataset is gone"})
    [row] = sweep_rows(ws, sweep)
    assert row.evaluation["state"] == "unavailable" and row.scores == {}
    assert evaluation.evaluation_of(ws, run, "identity_heldout", request=False)["reason"] == "the dataset is gone"


def test_a_failed_evaluation_job_is_shown_failed(sweep_of_one, monkeypatch):
    ws, run, sweep = sweep_of_one
    job = ws / "evals" / "e1"
    job.mkdir(parents=True)
    (job / "status.json").write_text(json.dumps({"state": "failed", "error": {"message": "out of memory"}}))
    monkeypatch.setattr(evaluation, "request_evaluation", lambda *a: {"state": "requested", "job": str(job)})
    [row] = sweep_rows(ws, sweep)
    [row] = sweep_rows(ws, sweep)
    assert row.evaluation["state"] == "failed" and row.evaluation["reason"] == "out of memory"


def test_result_file_names_follow_the_dataset():
    run = RunFolder(runs_dir("/ws") / "r")
    assert evaluation.result_file(run, "arithmetic_2digit_test").name == "arithmetic_2digit_test.json"
    # a file: its stem, flattened, exactly as the evaluator (core/eval/results.py) saves it
    assert evaluation.result_file(run, "data/my set.jsonl").name == "my_set.json"


def test_one_evaluation_at_a_time_the_next_waits_for_the_running_one(sweep_of_one, monkeypatch):
    """Each evaluation loads a model and uses every core: a sweep's finished runs are evaluated one by one."""
    import os

    ws, run, sweep = sweep_of_one
    running = ws / "evals" / "e0"  # an evaluation of another run, started from a page, still running
    running.mkdir(parents=True)
    (running / "request.json").write_text(json.dumps({"run": "elsewhere", "dataset": "identity_heldout"}))
    (running / "status.json").write_text(json.dumps({"state": "running", "pid": os.getpid()}))
    asked = []
    monkeypatch.setattr(evaluation, "request_evaluation",
                        lambda workspace, r, dataset: asked.append(r.path) or {"state": "requested", "job": "j"})
    [row] = sweep_rows(ws, sweep)
    [row] = sweep_rows(ws, sweep)
    assert row.evaluation == {"state": "waiting"} and asked == []
    assert cell(row, "evaluation") == "waiting"

    (running / "status.json").write_text(json.dumps({"state": "completed", "pid": os.getpid()}))
    [row] = sweep_rows(ws, sweep)
    assert row.evaluation["state"] == "requested" and asked == [run.path]
