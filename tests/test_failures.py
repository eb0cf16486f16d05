"""A trainer that crashes or is killed must read as failed, with the reason where the user looks."""
from __future__ import annotations

import os
import signal
import sys

import pytest

from core import runner
from core.run_folder import active_run, list_runs

from helpers import tiny_spec, wait_for_end, wait_for_step


def test_broken_dataset_fails_with_reason_and_traceback(tiny_model_dir, workspace, tmp_path):
    # The spec does not open dataset files, so this gets past validation and breaks inside the trainer.
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"instruction": "a", "output": "b"}\n{"instruction": "c", "output": \n')
    run = runner.start(tiny_spec(tiny_model_dir, data={"dataset": str(broken)}), workspace)
    status = wait_for_end(run)

    assert status["state"] == "failed"
    assert status["error"]["kind"] == "DatasetError"
    assert "line 2" in status["error"]["message"] and str(broken) in status["error"]["message"]
    assert status["ended_at"]
    log = run.log_tail()
    assert "Traceback" in log and "line 2: invalid JSON" in log
    assert not run.adapter_dir.exists()


def test_killed_trainer_reads_as_failed(tiny_model_dir, workspace):
    # SIGKILL leaves the trainer no chance to write its own verdict; readers must still see the truth.
    run = runner.start(tiny_spec(tiny_model_dir, train={"max_steps": 200}), workspace)
    status = wait_for_step(run, 1)
    os.kill(status["pid"], signal.SIGKILL)
    status = wait_for_end(run, timeout_s=30)

    assert status["state"] == "failed"
    assert status["error"]["kind"] == "ProcessDied"
    assert status["step"] < 200
    assert active_run(workspace) is None  # a dead trainer does not block the next run


def test_failed_launch_does_not_block_the_workspace(workspace, monkeypatch):
    # If the trainer cannot even be started, the run must say so, not sit "queued" with no pid forever
    # (which made every later start raise RunnerBusy).
    from core.spec import spec_from_dict

    monkeypatch.setattr(sys, "executable", str(workspace / "no-such-python"))
    with pytest.raises(OSError):
        runner.start(spec_from_dict({}), workspace)
    (run,) = list_runs(workspace)
    status = run.status()
    assert status["state"] == "failed" and status["error"]["kind"] == "FileNotFoundError"
    assert active_run(workspace) is None
