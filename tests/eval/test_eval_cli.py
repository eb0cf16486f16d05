"""`app.py eval` on the tiny run, through its own process: the held-out scores and lm-eval's bundled arithmetic
task for base and tuned, offline, saved in the run folder and printed."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from core.eval import benchmark
from core.paths import PROJECT_ROOT
from core.runs.folder import RunFolder


def app(*args, workspace, timeout=600):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    return subprocess.run([sys.executable, "app.py", *map(str, args), "--workspace", str(workspace)], cwd=PROJECT_ROOT,
                          capture_output=True, text=True, timeout=timeout, env=env)


@pytest.fixture
def run_copy(tiny_runs, tmp_path):
    run = RunFolder(tmp_path / "ws" / "runs" / tiny_runs["lora"].run_id)
    shutil.copytree(tiny_runs["lora"].path, run.path)
    return run


def test_eval_and_lm_eval_benchmark_on_base_and_tuned_offline(run_copy, tmp_path):
    result = app("eval", run_copy.run_id, "--dataset", "arithmetic_2digit_test", "--max-samples", 2,
                 "--max-new-tokens", 6, "--benchmark", "arithmetic_2digit", "--limit", 3, workspace=tmp_path / "ws")
    assert result.returncode == 0, result.stderr[-3000:]
    saved = run_copy.path / "eval" / "arithmetic_2digit_test.json"
    scores = json.loads(saved.read_text(encoding="utf-8"))
    assert scores["match"] == "number" and scores["samples"] == 2 and set(scores["models"]) == {"base", "tuned"}
    bench = json.loads((run_copy.path / "eval" / "lm-eval-arithmetic_2digit.json").read_text(encoding="utf-8"))
    assert bench["documents"] == {"lorawb_arithmetic_2digit": 3}
    row = next(r for r in bench["rows"] if r["metric"] == "lorawb_arithmetic_2digit/exact_match,last_number")
    assert 0 <= row["base"] <= 1 and 0 <= row["tuned"] <= 1 and row["difference"] == pytest.approx(row["tuned"] - row["base"])
    # the tuned run really had the adapter on: the tiny run at lr 2e-2 changes the greedy answers
    assert len(bench["answers"]) == 3 and [a["base"] for a in bench["answers"]] != [a["tuned"] for a in bench["answers"]]
    assert [a["target"] for a in bench["answers"]] == ["70", "133", "342"]  # the first test rows' results
    out = result.stdout
    assert "exact_match" in out and "lm-eval arithmetic_2digit" in out and str(saved) in out
    assert "Q: What is 18 + 52?" in out


def test_bad_options_are_refused_naming_the_flag(run_copy, tmp_path):
    ws = tmp_path / "ws"
    result = app("eval", run_copy.run_id, workspace=ws)  # the tiny job held out nothing
    assert result.returncode == 2 and "--dataset" in result.stderr and "eval_split" in result.stderr
    result = app("eval", run_copy.run_id, "--dataset", "no_such_set", workspace=ws)
    assert result.returncode == 2 and "--dataset" in result.stderr and "no_such_set" in result.stderr
    result = app("eval", run_copy.run_id, "--dataset", "identity_heldout", "--benchmark", "nope.yaml", workspace=ws)
    assert result.returncode == 2 and "--benchmark" in result.stderr
    result = app("eval", run_copy.run_id, "--dataset", "identity_heldout", "--max-new-tokens", 0, workspace=ws)
    assert result.returncode == 2 and "--max-new-tokens" in result.stderr
    result = app("eval", "no-such-run", "--dataset", "identity_heldout", workspace=ws)
    assert result.returncode == 2 and "no-such-run" in result.stderr
    assert not (run_copy.path / "eval").exists()


def test_a_task_yaml_of_the_users_own_is_read_for_its_names(tmp_path):
    task = tmp_path / "mine.yaml"
    task.write_text("task: my_task\ndataset_path: json\nprocess_results: !function utils.process\n", encoding="utf-8")
    assert benchmark.task_names(str(task)) == ["my_task"]
    assert benchmark.task_names(str(tmp_path)) == ["my_task"]
    with pytest.raises(ValueError, match="bundled task"):
        benchmark.task_names(str(tmp_path / "missing.yaml"))
