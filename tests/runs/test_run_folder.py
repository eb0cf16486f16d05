"""The run folder contract: atomic merged status, metrics read by byte offset, one active run per workspace
(the rules every job folder shares: test_job_folder.py)."""
from __future__ import annotations

import json
import os
import subprocess
import threading
from pathlib import Path

from core.runs.folder import RunFolder, active_run, list_runs, new_run_folder, pid_alive
from tests.helpers import dead_pid, wait_until


def make_run(workspace, name, state="completed") -> RunFolder:
    """A run folder as the runner leaves it: job.yaml, then status.json straight after."""
    path = workspace / "runs" / name
    path.mkdir(parents=True)
    (path / "job.yaml").write_text("method: lora\n")
    run = RunFolder(path)
    run.write_status(state=state)
    return run


def test_write_status_merges_and_keeps_defaults(tmp_path):
    run = RunFolder(tmp_path)
    run.write_status(state="running", pid=123)
    run.write_status(step=3, total_steps=10)
    status = json.loads(run.status_file.read_text())
    assert status["state"] == "running" and status["pid"] == 123  # earlier fields survive a later write
    assert status["step"] == 3 and status["total_steps"] == 10
    assert status["error"] is None and "started_at" in status  # the full shape is there from the first write
    # No temporary file left behind; the lock file that serialises writers stays by design.
    assert sorted(p.name for p in tmp_path.iterdir()) == [".status.lock", "status.json"]


def test_write_status_is_atomic_for_a_concurrent_reader(tmp_path):
    # A reader polling while the trainer rewrites must always see a whole JSON document.
    run = RunFolder(tmp_path)
    run.write_status(state="running")
    padding = "x" * 200_000  # big enough that a non-atomic write would be caught half-done
    done = threading.Event()
    torn = []

    def reader():
        while not done.is_set():
            try:
                json.loads(run.status_file.read_text())
            except json.JSONDecodeError:
                torn.append(1)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for step in range(150):
            run.write_status(step=step, note=padding)
    finally:
        done.set()
        thread.join()
    assert not torn
    assert run.raw_status()["step"] == 149


def test_read_metrics_by_offset_returns_only_new_records(tmp_path):
    run = RunFolder(tmp_path)
    assert run.read_metrics(0) == ([], 0)  # no file yet: nothing, same offset
    run.append_metrics({"step": 1, "loss": 2.0})
    run.append_metrics({"step": 2, "loss": 1.5})
    records, offset = run.read_metrics(0)
    assert [r["step"] for r in records] == [1, 2] and offset == run.metrics_file.stat().st_size

    run.append_metrics({"step": 3, "loss": 1.2})
    records, offset = run.read_metrics(offset)
    assert [r["step"] for r in records] == [3]
    assert run.read_metrics(offset) == ([], offset)


def test_read_metrics_leaves_a_partial_line_for_the_next_call(tmp_path):
    run = RunFolder(tmp_path)
    run.append_metrics({"step": 1})
    with open(run.metrics_file, "a") as fh:
        fh.write('{"step": 2, "lo')  # the trainer is mid-write
    records, offset = run.read_metrics(0)
    assert [r["step"] for r in records] == [1]
    with open(run.metrics_file, "a") as fh:
        fh.write('ss": 0.5}\n')
    records, offset2 = run.read_metrics(offset)
    assert records == [{"step": 2, "loss": 0.5}] and offset2 == run.metrics_file.stat().st_size


def test_a_zombie_child_counts_as_dead():
    # A trainer started by this process and killed stays a zombie until reaped; it must not read as alive.
    proc = subprocess.Popen(["true"])
    wait_until(lambda: Path(f"/proc/{proc.pid}/stat").read_text().split(") ", 1)[1][0] == "Z", 10, "a zombie")
    try:
        assert not pid_alive(proc.pid)
    finally:
        proc.wait()


def test_list_runs_newest_first_and_active_run(tmp_path):
    ws = tmp_path / "ws"
    assert list_runs(ws) == [] and active_run(ws) is None
    old, mid, new = make_run(ws, "a"), make_run(ws, "b"), make_run(ws, "c")
    (ws / "runs" / "not-a-run").mkdir()  # a folder without job.yaml is ignored
    for age, run in ((300, old), (200, mid), (100, new)):
        t = os.path.getmtime(run.job) - age
        os.utime(run.job, (t, t))
    assert [r.run_id for r in list_runs(ws)] == ["c", "b", "a"]

    new.write_status(state="failed")
    assert active_run(ws) is None
    mid.write_status(state="running", pid=os.getpid())
    assert active_run(ws).run_id == "b"
    mid.write_status(state="running", pid=dead_pid())  # a dead trainer no longer blocks the workspace
    assert active_run(ws) is None


def test_new_run_folders_are_distinct(tmp_path):
    first, second = new_run_folder(tmp_path, "lora"), new_run_folder(tmp_path, "lora")
    assert first.path != second.path and first.path.is_dir() and "lora" in first.run_id
