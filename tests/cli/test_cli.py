"""`python app.py train`: the terminal path runs the same runner, one run at a time per workspace, Ctrl-C
stops and saves, and bad jobs are refused before a run folder is made."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from core.cli import main
from core.paths import PROJECT_ROOT, WORKSPACE_ENV
from core.runs.folder import list_runs, runs_dir
from tests.helpers import tiny_job, wait_for_step, wait_until


def train_command(job: Path, workspace: Path, *overrides: str) -> list[str]:
    sets = [arg for pair in overrides for arg in ("--set", pair)]
    return [sys.executable, "app.py", "train", str(job), "--workspace", str(workspace), *sets]


BAD_JOBS = {
    # id: (job YAML, overrides, text the message must contain)
    "malformed-yaml": ("lora:\n  r: 8\n bad: [\n", [], "line 3"),
    "unknown-key": ("lora:\n  rank: 8\n", [], "lora.rank: unknown key"),
    "out-of-range": ("", ["lora.r=0"], "lora.r: 0 is below the minimum 1"),
    "missing-model": ("model:\n  path: /nonexistent/model-folder\n", [], "model.path: model folder not found"),
}


@pytest.mark.parametrize("job_text, overrides, message", BAD_JOBS.values(), ids=BAD_JOBS.keys())
def test_bad_job_is_refused_before_any_run_folder(workspace, tmp_path, capsys, monkeypatch, job_text, overrides,
                                                  message):
    # The same main() that app.py runs (the test below runs app.py itself), called in this process so
    # each bad job does not pay a fresh interpreter's imports. main() sets the workspace for the processes
    # it starts and sends library output to a log: both are undone after the test, not left to later tests.
    monkeypatch.setenv(WORKSPACE_ENV, str(workspace))
    monkeypatch.setattr("core.cli.keep_library_output_in", lambda path: None)
    job = tmp_path / "job.yaml"
    job.write_text(job_text)
    code = main(train_command(job, workspace, *overrides)[2:])
    stderr = capsys.readouterr().err
    assert code != 0
    assert message in stderr, stderr
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
def test_two_trains_at_once_one_runs_and_prints_its_folder_one_is_refused(tiny_model_dir, workspace, tmp_path):
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump(tiny_job(tiny_model_dir)))
    command = train_command(job, workspace, "train.max_steps=200")  # long enough to still run when the other ends
    both = [subprocess.Popen(command, cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(2)]
    try:
        loser = wait_until(lambda: next((p for p in both if p.poll() is not None), None), 180, "one of them to exit")
        winner = both[1 - both.index(loser)]
        refusal = loser.stderr.read()
        assert loser.returncode == 3, refusal
        (run,) = list_runs(workspace)
        assert [p.name for p in runs_dir(workspace).iterdir()] == [run.run_id]
        assert f"error: run {run.run_id} is still" in refusal, refusal
        assert loser.stdout.read() == ""  # no folder printed: a script reading the last line finds none

        wait_for_step(run, 1)
        winner.send_signal(signal.SIGINT)  # Ctrl-C: the trainer stops after this step and saves
        out, err = winner.communicate(timeout=180)
        assert winner.returncode == 0, err[-3000:]
        # Scripts use the last stdout line to find the run, so it must be the folder and nothing else.
        assert out.strip().splitlines()[-1] == str(run.path)
        assert run.path.parent == workspace.resolve() / "runs"
        status = json.loads(run.status_file.read_text())
        assert status["state"] == "stopped" and 1 <= status["step"] < 200
        assert (run.adapter_dir / "adapter_model.safetensors").is_file()
        assert yaml.safe_load(run.job.read_text())["train"]["max_steps"] == 200  # the override was kept
    finally:
        for proc in both:
            if proc.poll() is None:
                proc.kill()
            proc.communicate()
