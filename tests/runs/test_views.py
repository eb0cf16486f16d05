"""What the pages show of a workspace's runs: usable runs newest first, what a picker offers after a run
finished, which run the Train tab watches, and what one look at a run folder reports."""
from __future__ import annotations

import os
import subprocess

from core.runs.folder import RunFolder
from core.runs.views import RunWatch, pick_run, usable_runs


def make_run(workspace, name, state="completed", adapter=True, age_s=0.0) -> RunFolder:
    path = workspace / "runs" / name
    path.mkdir(parents=True)
    (path / "job.yaml").write_text("method: lora\n")
    stamp = 1_700_000_000 - age_s  # list_runs orders by job.yaml's time: older runs get older stamps
    os.utime(path / "job.yaml", (stamp, stamp))
    if adapter:
        (path / "adapter").mkdir()
        (path / "adapter" / "adapter_config.json").write_text("{}")
        (path / "adapter" / "adapter_model.safetensors").write_bytes(b"weights")
    run = RunFolder(path)
    run.write_status(state=state)
    return run


def test_usable_runs_are_finished_with_an_adapter_newest_first(tmp_path):
    old = make_run(tmp_path, "old", age_s=300)
    stopped = make_run(tmp_path, "stopped", state="stopped", age_s=200)
    make_run(tmp_path, "failed", state="failed", age_s=100)
    make_run(tmp_path, "no-adapter", adapter=False, age_s=50)
    make_run(tmp_path, "queued", state="queued", age_s=10)
    assert [r.run_id for r in usable_runs(tmp_path)] == [stopped.run_id, old.run_id]
    assert usable_runs(tmp_path / "nothing-here") == []


def test_a_picker_offers_a_run_that_finished_since_it_last_looked():
    usable = ["new", "old"]
    assert pick_run(None, None, usable) == "new"                # first look: the newest
    assert pick_run("old", "new", usable) == "old"              # the user's own pick stays...
    assert pick_run("old", "old", ["newer", "new", "old"]) == "newer"  # ...until a run finishes
    assert pick_run("gone", "new", usable) == "new"             # a pick that is no longer usable
    assert pick_run("x", None, []) is None


def test_the_watch_attaches_to_the_active_run_and_never_leaves_a_running_one(tmp_path):
    assert RunWatch.on_open(tmp_path).run is None
    done = make_run(tmp_path, "done", age_s=100)
    assert RunWatch.on_open(tmp_path).run == str(done.path)  # nothing active: the newest run is shown
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        live = make_run(tmp_path, "live", state="running", age_s=200)
        live.write_status(pid=sleeper.pid)
        assert RunWatch.on_open(tmp_path).run == str(live.path)  # the active run wins over a newer finished one
        watch = RunWatch.of(done).look().watch
        assert watch.state == "completed" and watch.follow(tmp_path).run == str(live.path)
        other = make_run(tmp_path, "other", state="running", age_s=50)
        other.write_status(pid=sleeper.pid)
        watching = RunWatch.of(live).look().watch
        assert watching.follow(tmp_path) is watching  # a watched run still going is not switched away from
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_look_reads_new_records_once_and_reports_the_end(tmp_path):
    run = make_run(tmp_path, "r", state="running")
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        run.write_status(pid=sleeper.pid, step=1)
        run.append_metrics({"step": 1, "loss": 2.0})
        first = RunWatch.of(run).look()
        assert first.new == [{"step": 1, "loss": 2.0}] and first.moved and not first.ended
        again = first.watch.look()
        assert again.new == [] and not again.moved  # nothing arrived: nothing to redraw
        run.append_metrics({"step": 2, "loss": 1.5})
        run.write_status(state="completed", step=2)
        last = again.watch.look()
        assert [r["step"] for r in last.watch.records] == [1, 2] and last.ended
        assert not last.watch.look().ended  # an end is reported once
    finally:
        sleeper.kill()
        sleeper.wait()


def test_an_adapter_folder_without_weights_is_not_usable(tmp_path):
    whole = make_run(tmp_path, "whole", age_s=20)
    broken = make_run(tmp_path, "broken", age_s=10)
    (broken.adapter_dir / "adapter_model.safetensors").unlink()  # cut short while it was written
    assert [r.run_id for r in usable_runs(tmp_path)] == [whole.run_id]
