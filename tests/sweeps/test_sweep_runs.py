"""The sweep acceptance: a 2x2 sweep on the tiny model queues 4 runs, they run one after another in grid order
across a scheduler killed mid-way and a fresh read of everything from disk, and its table has 4 rows with
train and eval loss, eval scores from the evaluator, peak memory and time; `app.py sweep` and `app.py sweeps`
do the same from a terminal."""
from __future__ import annotations

import json
import os
import signal

import pytest
import yaml

from core.paths import DATA_DIR
from core.runs import queue, scheduler
from core.runs.folder import list_runs
from core.sweeps.grid import Grid
from core.sweeps.results import columns, is_finished, sweep_rows
from core.sweeps.start import start_sweep
from core.sweeps.store import list_sweeps, load
from tests.helpers import tiny_job, wait_until
from tests.runs.test_queue import end_scheduler

# 12 training and 4 held-out samples; eval loss measured every step, so every run has one
SWEEP_JOB = {"data": {"eval_split": 0.25, "eval_steps": 1}, "runtime": {"threads": 1}}


@pytest.fixture
def sweep_workspace(workspace):
    yield workspace
    end_scheduler(workspace)


def test_a_2x2_sweep_runs_in_order_across_a_scheduler_restart(tiny_model_dir, sweep_workspace):
    ws = sweep_workspace
    grid = Grid.from_lines(["lora.r=2,4", "train.max_steps=3,2"], ["lora.alpha=2*lora.r"])
    ws.mkdir(parents=True, exist_ok=True)
    held_out = ws / "sums.jsonl"  # four rows of the bundled arithmetic test set: the evaluation stays short
    held_out.write_text("".join((DATA_DIR / "arithmetic_2digit_test.jsonl").read_text().splitlines(True)[:4]))
    sweep = start_sweep(ws, tiny_job(tiny_model_dir, **SWEEP_JOB), grid, eval_dataset=str(held_out), name="acceptance")
    ids = [item["entry_id"] for item in sweep.runs]
    assert len(ids) == 4 and len(set(ids)) == 4
    assert [e.entry_id for e in queue.entries(ws)][-3:] == ids[1:]  # queued in grid order
    rows = sweep_rows(ws, sweep)
    assert [r.settings for r in rows] == [{"lora.r": 2, "train.max_steps": 3, "lora.alpha": 4},
                                          {"lora.r": 2, "train.max_steps": 2, "lora.alpha": 4},
                                          {"lora.r": 4, "train.max_steps": 3, "lora.alpha": 8},
                                          {"lora.r": 4, "train.max_steps": 2, "lora.alpha": 8}]
    assert columns(sweep, rows)[:4] == ["#", "lora.r", "train.max_steps", "lora.alpha"]

    first = wait_until(lambda: queue.started_runs(ws).get(ids[0]), 90, "the first run to start")
    pid = wait_until(lambda: (scheduler.running_pid(ws) or 0) > 0 and scheduler.running_pid(ws), 30, "its pid")
    os.kill(pid, signal.SIGKILL)  # the scheduler dies with runs waiting (as when the machine or UI goes down)
    wait_until(lambda: scheduler.running_pid(ws) is None, 10, "the scheduler's lock to be released")

    # A fresh read from disk alone (what a restarted UI does) finds the whole sweep.
    again = load(ws, sweep.sweep_id)
    assert again == sweep and [s.sweep_id for s in list_sweeps(ws)] == [sweep.sweep_id]
    rows = sweep_rows(ws, again)
    assert [r.entry_id for r in rows] == ids
    assert rows[0].run_id == first.run_id and [r.state for r in rows[1:]] == ["queued"] * 3
    assert [r.queue_position for r in rows[1:]] == [1, 2, 3]

    assert scheduler.ensure_running(ws)  # what the UI does on start, and `app.py sweeps`
    wait_until(lambda: is_finished(sweep_rows(ws, again)), 600, "every run of the sweep to end")
    rows = sweep_rows(ws, again)
    assert len(rows) == 4 and len(list_runs(ws)) == 4, "no combination ran twice or went missing"
    assert [r.state for r in rows] == ["completed"] * 4, [r.reason for r in rows]
    for row in rows:
        job = yaml.safe_load((list_runs(ws)[0].path.parent / row.run_id / "job.yaml").read_text())
        assert (job["lora"]["r"], job["lora"]["alpha"], job["train"]["max_steps"]) == (
            row.settings["lora.r"], row.settings["lora.alpha"], row.settings["train.max_steps"])
        assert row.step == row.settings["train.max_steps"]
        assert row.final_loss > 0 and row.eval_loss > 0, row
        assert row.peak_memory_mb > 0 and row.duration_s > 0
    # Each finished run is evaluated by the real evaluator (its own process), once, and its scores join the row.
    rows = wait_until(lambda: (rs := sweep_rows(ws, again)) and all(r.evaluation.get("state") == "done" for r in rs)
                      and rs, 600, "every run's evaluation")
    for row in rows:
        assert {"exact_match", "contains", "rouge_l", "loss"} <= set(row.scores), row.scores
        assert 0 <= row.scores["exact_match"] <= 1 and row.scores["loss"] > 0
        assert (list_runs(ws)[0].path.parent / row.run_id / "eval" / "sums.json").is_file()
    # one after another, in grid order
    statuses = [json.loads((list_runs(ws)[0].path.parent / r.run_id / "status.json").read_text()) for r in rows]
    for before, after in zip(statuses, statuses[1:]):
        assert after["attempts"][0]["launched_at"] >= before["ended_at"] - 1.0


def test_the_cli_queues_a_sweep_or_nothing(tiny_model_dir, workspace, cli, tmp_path):
    sweep_workspace = workspace  # the cli fixture's
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump(tiny_job(tiny_model_dir, train={"max_steps": 1}, runtime={"threads": 1})))
    code, out, err = cli("sweep", str(job), "--grid", "lora.r=2,0", "--tie", "lora.alpha=2*lora.r")
    assert code == 2 and "combination 2 (lora.r=0) lora.r" in err and "nothing was queued" in err
    assert queue.is_empty(sweep_workspace) and not list_sweeps(sweep_workspace)

    code, out, err = cli("sweep", str(job), "--grid", "lora.r=2,4", "--tie", "lora.alpha=2*lora.r",
                         "--set", "lora.dropout=0.1", "--name", "from a terminal")
    assert code == 0, err
    sweep = load(sweep_workspace, out.strip())
    assert sweep.name == "from a terminal" and sweep.job["lora"]["dropout"] == 0.1
    assert "1. lora.r=2, lora.alpha=4  queued as" in err
    code, out, err = cli("sweeps", sweep.sweep_id, "--follow")  # returns once every run ended
    assert code == 0, err
    assert out.splitlines()[0].split() == ["#", "lora.r", "lora.alpha", "state", "final_loss", "eval_loss",
                                           "peak_memory_mb", "duration_s", "run"]
    code, out, err = cli("sweeps", sweep.sweep_id, "--json")
    final = json.loads(out)
    assert [r["state"] for r in final] == ["completed", "completed"]
    assert [r["settings"]["lora.alpha"] for r in final] == [4, 8]
    code, out, err = cli("sweeps")
    assert code == 0 and f"{sweep.sweep_id}  2/2 completed  lora.r=2,4  from a terminal" in out
