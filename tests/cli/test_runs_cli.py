"""`app.py runs [--json]`, `stop RUN --kill`, `resume RUN` and `queue JOB.yaml --set ...` on real trainer
processes: a trainer hung in a step (it ignores Stop and SIGTERM) is ended by Kill within the grace period
with nothing of its process group left, reads stopped (killed) and resumable, and resume continues it in
the same folder with every step logged once."""
from __future__ import annotations

import json
import os
import signal
import time

import pytest
import yaml

from core.cli import main
from core.paths import WORKSPACE_ENV
from core.runs import checkpoints, queue, runner
from core.runs.process_group import group_members
from tests.helpers import tiny_job, tiny_spec, wait_for_end, wait_for_step, wait_until
from tests.runs.test_queue import end_scheduler

RUN_FIELDS = {"run_id", "path", "state", "reason", "step", "total_steps", "started_at"}
GRACE_S = 2.0


@pytest.fixture
def cli(workspace, monkeypatch, capsys):
    """main() as app.py runs it, in this process; returns (exit code, stdout, stderr)."""
    monkeypatch.setenv(WORKSPACE_ENV, str(workspace))
    monkeypatch.setattr("core.cli.keep_library_output_in", lambda path: None)
    capsys.readouterr()

    def call(*argv: str):
        code = main([*argv, "--workspace", str(workspace)])
        out = capsys.readouterr()
        return code, out.out, out.err

    yield call
    end_scheduler(workspace)


def listed(cli) -> dict[str, dict]:
    code, out, err = cli("runs", "--json")
    assert code == 0, err
    rows = json.loads(out)
    for row in rows:
        assert set(row) >= RUN_FIELDS, row
    return {row["run_id"]: row for row in rows}


def test_kill_a_hung_trainer_then_resume_it_from_the_terminal(tiny_model_dir, workspace, cli):
    spec = tiny_spec(tiny_model_dir, train={"max_steps": 400, "save_steps": 2}, runtime={"threads": 1})
    run = runner.start(spec, workspace)
    wait_until(lambda: checkpoints.last_checkpoint(run) and run.raw_status().get("step", 0) >= 3, 180,
               "a whole checkpoint and a step past it")
    status = run.raw_status()
    pgid, trainer = status["pgid"], status["pid"]
    os.kill(trainer, signal.SIGSTOP)  # hung in a step: it will not see Stop, and SIGTERM waits on it
    code, _, err = cli("stop", run.run_id)
    assert code == 0 and "asked" in err
    time.sleep(1.0)
    assert run.is_active()

    begun = time.monotonic()
    code, out, err = cli("stop", run.run_id[:-2], "--kill", "--grace", str(GRACE_S))  # the start of its id
    took = time.monotonic() - begun
    assert code == 0, err
    assert f"needed SIGKILL after {GRACE_S:g} s" in err and out.strip() == str(run.path)
    assert took < GRACE_S + 5, took
    assert group_members(pgid) == [], "no process of its group is left"
    status = run.status()
    assert status["state"] == "stopped" and status["error"]["kind"] == "Killed", status

    row = listed(cli)[run.run_id]
    assert row["state"] == "stopped" and row["resumable"] is True
    assert row["reason"].startswith("Ended by Kill at step") and row["reason_kind"] == "Killed"
    assert row["path"] == str(run.path) and row["total_steps"] == 400 and row["started_at"]
    code, out, _ = cli("runs")
    assert run.run_id in out and "Ended by Kill" in out  # the table for people

    step, _ = checkpoints.last_checkpoint(run)
    code, out, err = cli("resume", str(run.path), "--detach")  # a folder names the run too
    assert code == 0, err
    assert f"resuming {run.run_id} from step {step}" in err and out.strip() == str(run.path)
    wait_for_step(run, step + 2)
    code, _, err = cli("resume", run.run_id)
    assert code == 2 and "still" in err  # a running run is not resumed twice
    runner.stop(run)
    status = wait_for_end(run)
    assert status["state"] == "stopped"
    steps = [r["step"] for r in run.read_metrics()[0] if "loss" in r]
    assert steps == list(range(1, status["step"] + 1)), "every step exactly once, continuing after the checkpoint"
    first, second = status["attempts"]
    assert first["error_kind"] == "Killed" and second["from_step"] == step
    assert listed(cli)[run.run_id]["attempts"] == 2


def test_unknown_runs_are_refused_by_name(cli):
    for command in (("resume", "nope"), ("stop", "nope"), ("stop", "nope", "--kill")):
        code, _, err = cli(*command)
        assert code == 2 and "no run 'nope'" in err, err


def test_queue_from_a_job_file_with_overrides(tiny_model_dir, workspace, cli, tmp_path):
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump(tiny_job(tiny_model_dir)))
    code, _, err = cli("queue", str(job), "--set", "lora.r=0")
    assert code != 0 and "lora.r: 0 is below the minimum 1" in err and queue.is_empty(workspace)

    long_run = runner.start(tiny_spec(tiny_model_dir, train={"max_steps": 500}, runtime={"threads": 1}), workspace)
    code, out, err = cli("queue", str(job), "--set", "train.max_steps=3")
    assert code == 0, err
    (entry,) = queue.entries(workspace)
    assert out.strip() == str(entry.path) and f"queued as {entry.entry_id}, position 1" in err
    assert yaml.safe_load(entry.path.read_text())["train"]["max_steps"] == 3
    rows = listed(cli)
    assert rows[entry.entry_id]["state"] == "queued" and rows[entry.entry_id]["queue_position"] == 1
    assert rows[long_run.run_id]["state"] in ("queued", "running")
    code, _, _ = cli("queue", str(job))  # a second job, then taken off the queue before it starts
    second = next(e for e in queue.entries(workspace) if e.entry_id != entry.entry_id)
    code, _, err = cli("stop", second.entry_id)
    assert code == 0 and f"removed {second.entry_id} from the queue" in err
    assert [e.entry_id for e in queue.entries(workspace)] == [entry.entry_id]
    long_run.kill(grace_s=5)
    run = wait_until(lambda: queue.started_runs(workspace).get(entry.entry_id), 60, "the queued job to start")
    assert wait_for_end(run)["state"] == "completed"
    assert listed(cli)[run.run_id]["step"] == 3
