"""A full disk is a named condition, not a crash: the UI starts, library warnings that cannot be logged are
dropped with one line, a status that cannot be written is reported, and Start warns when a run's outputs
will not fit. (The trainer's side, DiskFull with the partial checkpoint removed, is in
tests/training/test_guards.py.) Every test uses a real small file system (tmpfs) filled to the brim."""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

from core.runs.folder import RunFolder
from tests.helpers import fill_disk, small_tmpfs, tiny_spec


def test_the_ui_builds_when_its_workspace_cannot_even_be_created(tmp_path, capsys):
    from webui.app import build_app

    # One inode: the mount point itself; creating any folder in it fails with ENOSPC, as on a full disk.
    with small_tmpfs(tmp_path / "full", "1m", inodes=1) as disk:
        demo = build_app(disk / "ws")
        assert demo is not None
        assert not (disk / "ws").exists()
    assert "could not be created (No space left on device)" in capsys.readouterr().err


def test_library_warnings_on_a_full_disk_cost_one_line_not_a_traceback(tmp_path):
    with small_tmpfs(tmp_path / "full", "1m") as disk:
        fill_disk(disk)
        code = ("import logging, sys; from pathlib import Path; from core.runtime.quiet import keep_library_output_in; "
                f"keep_library_output_in(Path({str(disk / 'logs' / 'serve.log')!r})); "
                "[logging.getLogger('transformers').warning('x' * 10000) for _ in range(3)]; print('alive')")
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "alive", done.stderr
    assert "Traceback" not in done.stderr and "Logging error" not in done.stderr
    assert done.stderr.count("cannot be written") == 1


def test_a_dead_trainers_verdict_is_read_even_when_status_json_cannot_be_replaced(tmp_path):
    with small_tmpfs(tmp_path / "full", "1m") as disk:
        run = RunFolder(disk / "run")
        run.path.mkdir()
        dead = subprocess.Popen([sys.executable, "-c", "pass"])
        dead.wait()
        run.status_file.write_text(json.dumps({"state": "running", "pid": dead.pid, "step": 3, "error": None}))
        fill_disk(disk)
        status = run.status()  # the UI's poll: must not raise
        assert status["state"] == "failed" and status["error"]["kind"] == "ProcessDied"
        assert "could not be updated: No space left on device" in status["error"]["message"]


def test_start_warns_when_the_adapter_and_checkpoints_will_not_fit(tiny_model_dir, tmp_path, monkeypatch):
    from core.spec import check_launch

    # Each checkpoint and the adapter carry the tokenizer (3.5 MB): one checkpoint fits in 16 MB, forty do not.
    with small_tmpfs(tmp_path / "small", "16m") as disk:
        monkeypatch.setenv("LORA_WORKBENCH_WORKSPACE", str(disk / "ws"))
        spec = tiny_spec(tiny_model_dir, train={"max_steps": 40, "save_steps": 1}, lora={"r": 64})
        notes = check_launch(spec)
        roomy = check_launch(tiny_spec(tiny_model_dir))  # the same disk holds a run without checkpoints
    assert len(notes) == 1 and notes[0] in spec.notes
    assert notes[0].startswith("only 16.8 MB is free under") and "(adapter 4.0 MB + 40 checkpoints of 5.2 MB)" in notes[0]
    assert "DiskFull" in notes[0]
    assert roomy == []


def test_the_trainer_reports_disk_full_even_when_it_cannot_write_a_status_file(tmp_path):
    # The last resort: status.json exists, the disk is full, so the verdict is written over it in place.
    from core.runtime.disk import disk_full
    from core.training.guards import report_failure

    with small_tmpfs(tmp_path / "full", "1m") as disk:
        run = RunFolder(disk / "run")
        run.path.mkdir()
        run.write_status(state="running", pid=os.getpid())
        fill_disk(disk)
        assert report_failure(run, disk_full(disk, "training")) == 1
        status = run.raw_status()
    assert status["state"] == "failed" and status["error"]["kind"] == "DiskFull"
    assert "is full (0 bytes free) while training" in status["error"]["message"]


def test_logging_module_is_left_alone():
    # keep_library_output_in replaces only its own handler; the tests above ran it in a child process.
    assert not any(type(h).__name__ == "_FileMadeOnFirstRecord" and getattr(h, "failed", False)
                   for h in logging.getLogger().handlers)
