"""A trainer that crashes or is killed must read as failed, with the reason where the user looks."""
from __future__ import annotations

import os
import shutil
import signal
import sys

import pytest

from core.runs import runner
from core.runs.folder import active_run, list_runs
from tests.helpers import tiny_spec, wait_for_end, wait_until


def test_trainer_failure_is_reported_with_reason_and_traceback(tiny_model_dir, workspace, tmp_path):
    # Bad data is refused before launch now (tests/test_data_validation.py), so break what only the trainer
    # reads: the weights file. The config is intact, so the spec's checks pass and the process starts.
    broken = tmp_path / "broken-model"
    shutil.copytree(tiny_model_dir, broken)
    (broken / "model.safetensors").write_bytes(b"not a safetensors file")
    run = runner.start(tiny_spec(broken), workspace)
    status = wait_for_end(run)

    assert status["state"] == "failed"
    assert status["error"]["kind"] and status["error"]["message"]
    assert status["ended_at"]
    log = run.log_tail()
    assert "Traceback" in log and status["error"]["kind"] in log
    assert not run.adapter_dir.exists()


def test_killed_trainer_reads_as_failed(tiny_model_dir, workspace):
    # SIGKILL leaves the trainer no chance to write its own verdict; readers must still see the truth.
    run = runner.start(tiny_spec(tiny_model_dir, train={"max_steps": 200}), workspace)

    def reported_running():
        status = run.status()
        return status if status["state"] == "running" else None

    # Killed once it has written "running" itself (it is still loading then): it writes nothing after.
    status = wait_until(reported_running, 60, "the trainer to report running")
    os.kill(status["pid"], signal.SIGKILL)
    status = wait_for_end(run, timeout_s=30)

    assert status["state"] == "failed"
    # Its supervisor saw the signal (core/runs/supervisor.py): the reason names it, not just "died".
    assert status["error"]["kind"] == "KilledBySignal" and "signal 9" in status["error"]["message"], status["error"]
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
