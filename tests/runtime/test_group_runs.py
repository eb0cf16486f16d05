"""A group run's whole life on this CPU: two "nodes" on one machine make one run, and a rank that dies fails
the run naming it, with no process left behind. Each test trains real ranks (gloo); one group at a time."""
from __future__ import annotations

import os
import re
import signal
import time

import pytest

from core.runs import runner
from core.runs.folder import RunFolder
from core.runs.job_folder import pid_alive
from tests.helpers import free_port, kill_leftover_trainers, tiny_spec, wait_for_end, wait_for_step, wait_until


def rank_pids(run: RunFolder) -> dict[int, int]:
    """{global rank: pid} as each rank printed it at start."""
    return {int(r): int(p) for r, p in re.findall(r"\[workbench\] rank (\d+) of \d+, pid (\d+)", run.log_file.read_text())}


def test_two_nodes_on_one_machine_make_one_run(tiny_model_dir, tmp_path):
    port = free_port()
    layout = {"nodes": 2, "processes": 1, "strategy": "ddp", "device": "cpu", "main_address": "127.0.0.1",
              "main_port": port, "threads": 1}
    spaces = [tmp_path / "node0", tmp_path / "node1"]  # one trainer per workspace: each node has its own
    try:
        runs = [runner.start(tiny_spec(tiny_model_dir, runtime={**layout, "node_rank": rank},
                                       train={"batch_size": 2}), spaces[rank]) for rank in (0, 1)]
        ends = [wait_for_end(run, timeout_s=300) for run in runs]
    finally:
        for space in spaces:
            kill_leftover_trainers(space)
    main, other = runs
    assert [e["state"] for e in ends] == ["completed", "completed"], [r.log_tail(3000) for r in runs]
    main_log, other_log = main.log_file.read_text(), other.log_file.read_text()
    # Global ranks 0 (node 0) and 1 (node 1) each trained half of the 16 rows; one world of 2.
    assert re.search(r"\[rank0\]:\[workbench\] rank 0 of 2 trained on 8 rows", main_log), main_log[-3000:]
    assert re.search(r"\[rank1\]:\[workbench\] rank 1 of 2 trained on 8 rows", other_log), other_log[-3000:]
    # The main node's folder is the run; the other node's keeps its rank's log only.
    assert (main.adapter_dir / "adapter_model.safetensors").is_file() and not other.adapter_dir.exists()
    assert [r["step"] for r in main.read_metrics()[0] if "loss" in r][-1] == 4
    assert other.read_metrics()[0] == []


def test_a_killed_rank_fails_the_run_naming_it_and_leaves_no_process(tiny_model_dir, workspace):
    spec = tiny_spec(tiny_model_dir, runtime={"processes": 2, "strategy": "ddp", "device": "cpu"},
                     train={"batch_size": 2, "max_steps": 400})
    run = runner.start(spec, workspace)
    launcher = run.status()["pid"]
    wait_for_step(run, 2, timeout_s=240)
    pids = wait_until(lambda: (lambda p: p if len(p) == 2 else None)(rank_pids(run)), 30, "both ranks' pids")
    os.kill(pids[1], signal.SIGKILL)
    killed_at = time.time()
    status = wait_for_end(run, timeout_s=60)
    took = time.time() - killed_at
    print(f"\nrun failed {took:.1f} s after rank 1 was killed: {status['error']['message']}")
    assert status["state"] == "failed" and took <= 10, (took, status)
    message = status["error"]["message"]
    assert message.startswith(f"rank 1 (node 0, pid {pids[1]}) was ended by signal SIGKILL"), message
    assert status["step"] < 400
    wait_until(lambda: not any(pid_alive(p) for p in (launcher, *pids.values())), 10, "the group's processes to end")


@pytest.mark.slow  # a third group run; the acceptance points above stay in the default suite
def test_stop_stops_every_rank_at_the_same_step_and_saves(tiny_model_dir, workspace):
    spec = tiny_spec(tiny_model_dir, runtime={"processes": 2, "strategy": "ddp", "device": "cpu"},
                     train={"batch_size": 2, "max_steps": 400})
    run = runner.start(spec, workspace)
    wait_for_step(run, 2, timeout_s=240)
    pids = wait_until(lambda: (lambda p: p if len(p) == 2 else None)(rank_pids(run)), 30, "both ranks' pids")
    runner.stop(run)
    status = wait_for_end(run, timeout_s=120)
    assert status["state"] == "stopped", run.log_tail(3000)
    assert 2 <= status["step"] < 400
    log = run.log_file.read_text()
    # One stop request reaches both ranks, which end at the same step (neither waits on the other)
    shares = {int(r): int(n) for r, n in re.findall(r"\[workbench\] rank (\d) of 2 trained on (\d+) rows", log)}
    assert shares[0] == shares[1] == 2 * status["step"], (shares, status)
    assert (run.adapter_dir / "adapter_model.safetensors").is_file()
    wait_until(lambda: not any(pid_alive(p) for p in (status["pid"], *pids.values())), 10, "the group's processes to end")
