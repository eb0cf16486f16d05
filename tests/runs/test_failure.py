"""Failure reasons in plain words: how a trainer that died without reporting is judged (signal, the OOM
killer, Kill, a restart of the machine, an exit code), and how an error the trainer reported itself is
filed (GPU or CPU out of memory, non-finite loss, disk full, data, model, any other exception with its
last traceback frames)."""
from __future__ import annotations

import signal

import pytest

from core.runs import failure, host

RUNNING = {"state": "running", "step": 7, "boot_id": host.boot_id(), "oom_kills_at_start": host.oom_kill_count()}


def judged(status: dict, returncode, records=()) -> tuple[str, failure.Reason]:
    return failure.death_reason(status, returncode, list(records))


def test_a_signal_is_named_with_its_number_and_the_step():
    state, reason = judged(RUNNING, -signal.SIGKILL, [{"memory_mb": 10.0}])
    assert state == "failed" and reason.kind == "KilledBySignal"
    assert reason.sentence == "The trainer was killed by signal 9 (SIGKILL) at step 7."
    state, reason = judged(RUNNING, -signal.SIGTERM)
    assert "signal 15 (SIGTERM)" in reason.sentence


def test_kill_from_the_workbench_reads_stopped_not_failed():
    state, reason = judged({**RUNNING, "kill_requested_at": 1.0}, -signal.SIGKILL)
    assert (state, reason.kind) == ("stopped", "Killed")
    assert reason.sentence == "Ended by Kill at step 7."


def test_a_run_from_an_earlier_boot_was_cut_by_a_restart():
    state, reason = judged({**RUNNING, "boot_id": "an-earlier-boot"}, None)
    assert (state, reason.kind) == ("failed", "MachineRestart")
    assert "restart of the machine at step 7" in reason.sentence


def test_sigkill_with_memory_at_the_limit_is_the_oom_killer():
    limit = host.memory_limit_mb()
    if limit is None:
        pytest.skip("this machine does not say how much memory a process may use")
    records = [{"memory_mb": limit * 0.5}, {"memory_mb": limit * 0.95}]
    state, reason = judged(RUNNING, -signal.SIGKILL, records)
    assert (state, reason.kind, reason.key) == ("failed", "OutOfMemory", "oom_killer")
    assert "out-of-memory killer" in reason.sentence and str(round(limit * 0.95)) in reason.sentence
    assert "batch_size" in reason.advice


def test_the_oom_killers_counter_moving_is_evidence_too():
    if host.oom_kill_count() is None:
        pytest.skip("no oom_kill counter in /proc/vmstat")
    status = {**RUNNING, "oom_kills_at_start": host.oom_kill_count() - 1}
    assert judged(status, -signal.SIGKILL)[1].key == "oom_killer"


def test_an_exit_code_without_a_report():
    state, reason = judged(RUNNING, 3)
    assert (state, reason.kind) == ("failed", "ProcessDied") and "code 3" in reason.sentence


def test_a_verdict_written_to_status_reads_back_as_the_same_reason():
    status = {**RUNNING, **failure.death_verdict(RUNNING, -signal.SIGKILL, [])}
    reason = failure.explain(status)
    assert reason.kind == "KilledBySignal" and "killed by signal 9" in status["error"]["message"]
    assert reason.sentence == status["error"]["message"]


@pytest.mark.parametrize("error, phase, kind", [
    ({"kind": "OutOfMemoryError", "message": "CUDA out of memory. Tried to allocate 2 GiB"}, "training", "OutOfMemory"),
    ({"kind": "RuntimeError", "message": "DefaultCPUAllocator: not enough memory"}, "training", "OutOfMemory"),
    ({"kind": "NonFiniteLoss", "message": "loss is nan at step 3"}, "training", "NonFiniteLoss"),
    ({"kind": "OSError", "message": "[Errno 28] No space left on device"}, "training", "DiskFull"),
    ({"kind": "ValueError", "message": "line 4: no 'output'"}, "data", "DataError"),
    ({"kind": "OSError", "message": "no config.json"}, "model", "ModelLoadError"),
], ids=["gpu-oom", "cpu-oom", "non-finite", "disk-full", "data", "model"])
def test_a_reported_error_is_filed_under_its_kind_with_advice(error, phase, kind):
    reason = failure.explain({"state": "failed", "step": 3, "phase": phase, "error": error})
    assert reason.kind == kind
    assert error["message"] in reason.sentence and reason.advice


def test_any_other_exception_keeps_its_type_message_and_last_frames():
    log = ("step 3\nTraceback (most recent call last):\n"
           '  File "/x/site-packages/transformers/trainer.py", line 10, in train\n    self.step()\n'
           '  File "/work/proj/core/training/trainer.py", line 20, in step\n    boom()\n'
           '  File "/work/proj/core/training/callback.py", line 30, in boom\n    raise KeyError("k")\n'
           '  File "/work/proj/core/training/other.py", line 40, in deeper\n    pass\n'
           "KeyError: 'k'\n")
    reason = failure.explain({"state": "failed", "step": 3, "phase": "training",
                              "error": {"kind": "KeyError", "message": "'k'"}}, log)
    assert reason.kind == "Exception" and reason.sentence == "KeyError: 'k'"
    assert reason.frames == ["core/training/trainer.py:20 in step: boom()",
                             "core/training/callback.py:30 in boom: raise KeyError(\"k\")",
                             "core/training/other.py:40 in deeper: pass"]


def test_a_run_without_an_error_has_nothing_to_explain():
    assert failure.explain({"state": "completed", "error": None}) is None
