"""`python app.py train`: the terminal path runs the same runner, and refuses bad jobs before making a run."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from core.paths import PROJECT_ROOT
from tests.helpers import tiny_job


def app_train(job: Path, workspace: Path, *overrides: str) -> subprocess.CompletedProcess:
    sets = [arg for pair in overrides for arg in ("--set", pair)]
    return subprocess.run([sys.executable, "app.py", "train", str(job), "--workspace", str(workspace), *sets],
                          cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)


def test_train_prints_the_run_folder(tiny_model_dir, workspace, tmp_path):
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump(tiny_job(tiny_model_dir)))
    result = app_train(job, workspace, "train.max_steps=2")
    assert result.returncode == 0, result.stderr[-3000:]
    # Scripts use the last stdout line to find the run, so it must be the folder and nothing else.
    run = Path(result.stdout.strip().splitlines()[-1])
    assert run.parent == workspace.resolve() / "runs"
    status = json.loads((run / "status.json").read_text())
    assert status["state"] == "completed" and status["step"] == 2
    assert yaml.safe_load((run / "job.yaml").read_text())["train"]["max_steps"] == 2  # the override was kept


BAD_JOBS = {
    # id: (job YAML, overrides, text the message must contain)
    "malformed-yaml": ("lora:\n  r: 8\n bad: [\n", [], "line 3"),
    "unknown-key": ("lora:\n  rank: 8\n", [], "lora.rank: unknown key"),
    "out-of-range": ("", ["lora.r=0"], "lora.r: 0 is below the minimum 1"),
    "missing-model": ("model:\n  path: /nonexistent/model-folder\n", [], "model.path: model folder not found"),
}


@pytest.mark.parametrize("job_text, overrides, message", BAD_JOBS.values(), ids=BAD_JOBS.keys())
def test_bad_job_is_refused_before_any_run_folder(workspace, tmp_path, job_text, overrides, message):
    job = tmp_path / "job.yaml"
    job.write_text(job_text)
    result = app_train(job, workspace, *overrides)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr
    assert not (workspace / "runs").exists()


def test_bench_runs_the_launch_checks_before_measuring(workspace, tmp_path):
    job = tmp_path / "job.yaml"
    job.write_text("model:\n  path: /nonexistent/model-folder\n")
    result = subprocess.run([sys.executable, "app.py", "bench", str(job), "--workspace", str(workspace)],
                            cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "model.path: model folder not found" in result.stderr, result.stderr
    assert not (workspace / "runs").exists()


def test_params_opens_a_job_that_could_not_start_here_and_notes_what_it_ignored(tiny_model_dir, tmp_path):
    # An old run's job.yaml: another method's section, a dataset that is gone, a GPU this machine may lack.
    job = tiny_job(tiny_model_dir, data={"dataset": str(tmp_path / "deleted.jsonl")}, runtime={"device": "cuda"},
                   vera={"r": 64, "a_field_since_renamed": 1})
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(job))
    result = subprocess.run([sys.executable, "app.py", "params", str(path)], cwd=PROJECT_ROOT, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "note: ignored section 'vera': method lora does not read it" in result.stderr
    assert "trainable params:" in result.stdout
