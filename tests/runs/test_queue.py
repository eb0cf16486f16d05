"""The queue and its scheduler: jobs wait as files in the workspace in an order the user can change, leave
the queue by one rename into their run folder, and start one after another on this machine; killing the
scheduler mid-way and starting it again loses nothing and runs nothing twice."""
from __future__ import annotations

import os
import signal

import pytest
import yaml

from core.runs import queue, runner, scheduler
from core.runs.folder import list_runs
from core.runs.process_group import group_members
from tests.helpers import kill_leftover_trainers, start_server, tiny_spec, wait_until


def end_scheduler(workspace) -> None:
    """Empty the queue first (a scheduler exits once nothing waits), then end a scheduler still there."""
    for entry in queue.entries(workspace):
        queue.remove(workspace, entry.entry_id)
    kill_leftover_trainers(workspace)
    pid = scheduler.running_pid(workspace)
    if pid and pid > 0:
        os.kill(pid, signal.SIGKILL)


@pytest.fixture
def queue_workspace(workspace):
    yield workspace
    end_scheduler(workspace)


def test_entries_keep_their_order_move_and_remove(tmp_path):
    ids = [queue.add(tmp_path, f"method: lora\ntrain:\n  max_steps: {n}\n").entry_id for n in (1, 2, 3)]
    assert [e.entry_id for e in queue.entries(tmp_path)] == ids
    assert [e.position for e in queue.entries(tmp_path)] == [1, 2, 3]
    queue.move(tmp_path, ids[2], -1)
    assert [e.entry_id for e in queue.entries(tmp_path)] == [ids[0], ids[2], ids[1]]
    queue.move(tmp_path, ids[0], 10)  # past the end: stays last
    assert [e.entry_id for e in queue.entries(tmp_path)] == [ids[2], ids[1], ids[0]]
    queue.remove(tmp_path, ids[1])
    assert [e.entry_id for e in queue.entries(tmp_path)] == [ids[2], ids[0]]
    with pytest.raises(queue.QueueError, match="not in the queue"):
        queue.remove(tmp_path, ids[1])
    with pytest.raises(queue.QueueError):
        queue.move(tmp_path, "no-such-entry", 1)
    assert yaml.safe_load(queue.entries(tmp_path)[0].path.read_text())["train"]["max_steps"] == 3


def test_removing_refuses_an_id_that_names_a_file_outside_the_queue(tmp_path):
    """The id comes from a page's request or a terminal: a path-like one must not delete another yaml file."""
    queue.add(tmp_path, "method: lora\n")
    victim = tmp_path / "runs" / "r1" / "job.yaml"
    victim.parent.mkdir(parents=True)
    victim.write_text("method: lora\n")
    for hostile in ("../runs/r1/job", str(victim.with_suffix(""))):
        with pytest.raises(queue.QueueError, match="not in the queue"):
            queue.remove(tmp_path, hostile)
    assert victim.exists() and len(queue.entries(tmp_path)) == 1


def test_taking_an_entry_moves_its_file_once(tmp_path):
    entry = queue.add(tmp_path, "method: lora\n")
    target = tmp_path / "run" / "job.yaml"
    target.parent.mkdir()
    assert queue.take(tmp_path, entry, target) is True
    assert target.read_text() == "method: lora\n" and queue.is_empty(tmp_path)
    assert queue.take(tmp_path, entry, tmp_path / "other.yaml") is False  # a second scheduler gets nothing
    assert not (tmp_path / "other.yaml").exists()


def test_three_queued_jobs_run_in_order_across_a_ui_and_scheduler_killed_and_restarted(tiny_model_dir,
                                                                                      queue_workspace, tmp_path):
    ws = queue_workspace
    # Told apart by their step counts; long enough that the first still runs when its scheduler is killed.
    steps = [12, 4, 3]
    ids = [queue.enqueue(ws, tiny_spec(tiny_model_dir, train={"max_steps": n}, runtime={"threads": 1}),
                         start_scheduler=False) for n in steps]
    # The last two swap places: the queue's order, not the order they were added, decides.
    queue.move(ws, ids[2], -1)
    order = [ids[0], ids[2], ids[1]]
    servers = []
    try:
        # The UI starts the workspace's scheduler when it starts (jobs were left waiting).
        servers.append(start_server(ws, tmp_path / "ui-1.log")[0])
        first = wait_until(lambda: queue.started_runs(ws).get(order[0]), 90, "the scheduler to start the first job")
        pid = wait_until(lambda: (scheduler.running_pid(ws) or 0) > 0 and scheduler.running_pid(ws), 30, "its pid")
        wait_until(lambda: first.raw_status().get("pid"), 60, "the first trainer to be launched")

        servers[0].kill()  # the UI server and the scheduler die while a job runs and two wait
        os.kill(pid, signal.SIGKILL)
        servers[0].wait(timeout=30)
        wait_until(lambda: scheduler.running_pid(ws) is None, 10, "the scheduler's lock to be released")
        assert [e.entry_id for e in queue.entries(ws)] == order[1:]
        assert first.is_active(), "the run goes on without its scheduler"

        servers.append(start_server(ws, tmp_path / "ui-2.log")[0])  # the restarted UI starts a scheduler again
        wait_until(lambda: scheduler.running_pid(ws), 30, "the restarted UI to start a scheduler")
        assert scheduler.ensure_running(ws)  # and `app.py runs` doing the same finds it: still one scheduler
        wait_until(lambda: queue.is_empty(ws) and not any(r.is_active() for r in list_runs(ws)), 400,
                   "every queued job to run")
    finally:
        for server in servers:
            server.kill()
    started = queue.started_runs(ws)
    runs = [started[i] for i in order]
    assert len(list_runs(ws)) == 3, "no job ran twice"
    statuses = [r.status() for r in runs]
    assert [s["state"] for s in statuses] == ["completed"] * 3, [r.log_tail(2000) for r in runs]
    assert [s["step"] for s in statuses] == [12, 3, 4]
    # One after another: each started after the one before it had ended.
    for before, after in zip(statuses, statuses[1:]):
        assert after["attempts"][0]["launched_at"] >= before["ended_at"] - 1.0
    wait_until(lambda: scheduler.running_pid(ws) is None, 15, "the scheduler to exit once the queue is empty")
    assert queue.locate(ws, order[0]) == runs[0]


def test_a_busy_workspace_queues_and_locate_follows_the_job(tiny_model_dir, queue_workspace):
    ws = queue_workspace
    long_run = runner.start(tiny_spec(tiny_model_dir, train={"max_steps": 500}, runtime={"threads": 1}), ws)
    entry_id = queue.enqueue(ws, tiny_spec(tiny_model_dir, train={"max_steps": 2}))
    assert isinstance(queue.locate(ws, entry_id), queue.QueueEntry)  # waits: the machine is taken
    wait_until(lambda: long_run.raw_status().get("pid"), 60, "the first trainer")
    assert long_run.kill(grace_s=5) in ("terminated", "killed")
    assert not group_members(long_run.raw_status()["pgid"])
    run = wait_until(lambda: queue.started_runs(ws).get(entry_id), 30, "the queued job to start after the kill")
    assert queue.locate(ws, entry_id) == run
