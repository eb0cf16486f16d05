"""The run history (what the Runs tab and `app.py runs` show) and Compare, read from run folders alone:
figures from metrics.jsonl, time over every attempt, the adapter's size only when it is whole; rename,
note and delete (refused while the run is active; the space freed is reported); runs named by id, the
start of an id, or a folder; the settings in which jobs differ and their curves on each x axis."""
from __future__ import annotations

import json
import os

import pytest
import yaml

from core.runs import compare, history, queue
from core.runs.folder import RunFolder
from tests.helpers import tiny_job

RECORDS = [
    {"step": 1, "loss": 3.0, "learning_rate": 1e-3, "tokens_per_second": 100.0, "memory_mb": 50.0,
     "tokens_seen": 64, "elapsed_s": 1.0},
    {"step": 2, "loss": 2.5, "learning_rate": 2e-3, "tokens_per_second": 300.0, "memory_mb": 80.0,
     "tokens_seen": 128, "elapsed_s": 2.0},
    {"step": 2, "eval_loss": 2.7},
    {"step": 3, "loss": 2.0, "learning_rate": 1e-3, "tokens_per_second": 200.0, "memory_mb": 70.0,
     "tokens_seen": 192, "elapsed_s": 3.0},
    {"step": 3, "eval_loss": 2.9},
]


def make_run(workspace, name, job: dict, state="completed", records=RECORDS, weights=b"w" * 1000, **status):
    path = workspace / "runs" / name
    path.mkdir(parents=True)
    (path / "job.yaml").write_text(yaml.safe_dump(job))
    run = RunFolder(path)
    run.metrics_file.write_text("".join(json.dumps(r) + "\n" for r in records))
    if weights is not None:
        run.adapter_dir.mkdir()
        (run.adapter_dir / "adapter_config.json").write_text("{}")
        (run.adapter_dir / "adapter_model.safetensors").write_bytes(weights)
    run.write_status(state=state, step=3, total_steps=3, **status)
    return run


@pytest.fixture
def job(tiny_model_dir):
    return tiny_job(tiny_model_dir)


def test_a_row_holds_the_runs_figures(tmp_path, job):
    attempts = [{"launched_at": 100.0, "ended_at": 130.0}, {"launched_at": 200.0}]
    run = make_run(tmp_path, "r1", job, attempts=attempts, ended_at=215.0)
    row = history.run_row(run)
    assert (row.state, row.step, row.total_steps, row.method) == ("completed", 3, 3, "lora")
    assert row.model == job["model"]["path"] and row.dataset == "identity"
    assert (row.final_loss, row.final_eval_loss, row.best_eval_loss) == (2.0, 2.9, 2.7)
    assert row.tokens_per_second == 200.0 and row.peak_memory_mb == 80.0
    assert row.adapter_bytes == 1000
    assert (row.started_at, row.duration_s, row.attempts) == (100.0, 45.0, 2)  # 30 s + 15 s, not the gap
    assert row.reason is None and not row.resumable


def test_an_adapter_cut_short_has_no_size_and_a_failed_run_its_reason(tmp_path, job):
    run = make_run(tmp_path, "r1", job, state="failed", weights=None,
                   error={"kind": "OSError", "message": "[Errno 28] No space left on device"})
    (run.adapter_dir).mkdir()
    (run.adapter_dir / "adapter_config.json").write_text("{}")  # the weights never came
    row = history.run_row(run)
    assert row.adapter_bytes is None
    assert row.reason_kind == "DiskFull" and "No space left on device" in row.reason


def test_rename_and_note_show_in_the_row(tmp_path, job):
    run = make_run(tmp_path, "r1", job)
    assert history.rename(run, "  rank   8\n try ") == "rank 8 try"
    history.set_note(run, "the good one")
    row = history.run_row(run)
    assert (row.name, row.note, row.run_id) == ("rank 8 try", "the good one", "r1")
    assert history.rename(run, "") == "r1" and history.run_row(run).name == "r1"


def test_delete_frees_the_space_and_is_refused_while_the_run_is_active(tmp_path, job):
    live = make_run(tmp_path, "live", job, state="running", pid=os.getpid())
    with pytest.raises(history.RunBusy, match="stop or kill it"):
        history.delete(live)
    assert live.path.is_dir()
    done = make_run(tmp_path, "done", job)
    size = history.folder_size(done.path)
    assert size > 1000
    assert history.delete(done) == size
    assert not done.path.exists() and not list((tmp_path / "runs").glob(".deleting-*"))
    with pytest.raises(history.RunNotFound):
        history.delete(done)


def test_runs_are_found_by_id_start_of_id_or_folder(tmp_path, job):
    a = make_run(tmp_path, "20260101-lora-aaaa", job)
    make_run(tmp_path, "20260101-lora-bbbb", job)
    assert history.find_run(tmp_path, "20260101-lora-aaaa").path == a.path
    assert history.find_run(tmp_path, "20260101-lora-a").path == a.path
    assert history.find_run(tmp_path, str(a.path)).path == a.path.resolve()
    with pytest.raises(history.RunNotFound, match="names 2 runs"):
        history.find_run(tmp_path, "20260101")
    with pytest.raises(history.RunNotFound, match="no run 'x'"):
        history.find_run(tmp_path, "x")


def test_queued_jobs_come_first_in_their_order(tmp_path, job):
    make_run(tmp_path, "r1", job)
    second = queue.add(tmp_path, yaml.safe_dump(job))
    first = queue.add(tmp_path, yaml.safe_dump({**job, "method": "dora"}))
    queue.move(tmp_path, first.entry_id, -1)
    rows = history.all_rows(tmp_path)
    assert [(r.run_id, r.state, r.queue_position) for r in rows] == [
        (first.entry_id, "queued", 1), (second.entry_id, "queued", 2), ("r1", "completed", None)]
    assert rows[0].method == "dora"


def test_compare_lists_only_the_settings_that_differ(tmp_path, tiny_model_dir):
    a = make_run(tmp_path, "a", tiny_job(tiny_model_dir, lora={"r": 8}))
    b = make_run(tmp_path, "b", tiny_job(tiny_model_dir, lora={"r": 16}, train={"learning_rate": 1e-3}))
    differing = dict(compare.differing_settings([a, b]))
    assert differing["lora.r"] == ["8", "16"]
    assert differing["train.learning_rate"] == ["0.005", "0.001"]
    assert "model.path" not in differing and "lora.alpha" not in differing


@pytest.mark.parametrize("axis, xs", [("step", [1, 2, 3]), ("tokens", [64, 128, 192]), ("time", [1.0, 2.0, 3.0])])
def test_compare_curves_on_each_x_axis(tmp_path, job, axis, xs):
    curves = compare.curves(make_run(tmp_path, "a", job), axis)
    assert curves["loss"] == (xs, [3.0, 2.5, 2.0])
    assert curves["memory_mb"][1] == [50.0, 80.0, 70.0]
    # eval records carry a step only: they sit at their step's tokens or time
    assert curves["eval_loss"] == (xs[1:], [2.7, 2.9])


def test_the_runs_tab_acts_only_on_runs_of_its_own_workspace(tmp_path, job):
    mine = make_run(tmp_path / "ws", "r1", job)
    other = make_run(tmp_path / "elsewhere", "r2", job)
    ws = tmp_path / "ws"
    assert history.workspace_run(ws, str(mine.path)).path == mine.path.resolve()
    for path in (str(other.path), str(ws / "runs" / ".." / ".." / "elsewhere" / "runs" / "r2"), str(ws), "", None):
        assert history.workspace_run(ws, path) is None, path
    link = ws / "runs" / "link"
    link.symlink_to(other.path)  # a link in runs/ that leads out of the workspace is not a run of it
    assert history.workspace_run(ws, str(link)) is None
