"""The rules every job folder shares (training runs and exports): a worker that died without reporting
reads as failed, an end request reaches only an active job, the log tail reads only the end of the
file, and the one launcher starts workers the same way and marks a job failed when its worker cannot start."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from core.export.job import ExportJob
from core.paths import PROJECT_ROOT
from core.runs.folder import RunFolder
from core.runs.job_folder import tail_text
from core.runs.launch import LaunchError, launch
from tests.helpers import dead_pid, wait_until

KINDS = {  # kind: (folder type, its log, its end request, what the died message names)
    "run": (RunFolder, "train.log", "stop.request", "trainer"),
    "export": (ExportJob, "export.log", "cancel.request", "export"),
}


@pytest.fixture(params=KINDS.values(), ids=KINDS.keys())
def kind(request):
    return request.param


def test_running_with_dead_pid_reads_as_failed(kind, tmp_path):
    folder_type, log_name, _, worker = kind
    job = folder_type(tmp_path)
    job.write_status(state="running", pid=dead_pid(), step=5)
    status = job.status()
    assert status["state"] == "failed" and status["error"]["kind"] == "ProcessDied"
    assert worker in status["error"]["message"] and log_name in status["error"]["message"]
    assert status["ended_at"] and status["step"] == 5
    # The verdict is written down, so every later reader agrees without re-checking.
    assert job.raw_status()["state"] == "failed" and not job.is_active()


def test_running_with_live_pid_stays_running(kind, tmp_path):
    job = kind[0](tmp_path)
    job.write_status(state="running", pid=os.getpid())
    assert job.status()["state"] == "running" and job.is_active()


def test_final_states_are_never_rewritten(kind, tmp_path):
    job = kind[0](tmp_path)
    final = job.FINAL_STATES[0]
    job.write_status(state=final, pid=dead_pid())
    assert job.status()["state"] == final


def test_status_before_the_first_write_is_queued_with_the_kinds_fields(kind, tmp_path):
    job = kind[0](tmp_path)
    assert job.status() == job.EMPTY_STATUS and job.status()["state"] == "queued"
    assert job.is_active()  # written by a launcher that is about to start the worker: not free yet


def test_end_request_reaches_only_an_active_job(kind, tmp_path):
    folder_type, _, request_name, _ = kind
    job = folder_type(tmp_path)
    job.write_status(state="completed")
    assert job.request_end() is False and not (tmp_path / request_name).exists()
    job.write_status(state="running", pid=os.getpid())
    assert job.request_end() is True and job.end_requested() and (tmp_path / request_name).is_file()


def test_kind_specific_names_for_the_end_request(tmp_path):
    run, export = RunFolder(tmp_path / "run"), ExportJob(tmp_path / "export")
    for job in (run, export):
        job.path.mkdir()
        job.write_status(state="running", pid=os.getpid())
    run.request_stop()
    export.cancel()
    assert run.stop_requested() and run.stop_file.name == "stop.request"
    assert export.cancel_requested() and export.cancel_file.name == "cancel.request"


def bytes_read_by_this_process() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar in /proc/self/io")


def test_log_tail_reads_only_the_end_of_a_long_log(kind, tmp_path):
    job = kind[0](tmp_path)
    assert job.log_tail() == ""  # no log yet
    with open(job.log_file, "wb") as fh:
        fh.truncate(256 * 2**20)  # a 256 MiB log (sparse: nothing to write), as a long run leaves
        fh.seek(0, os.SEEK_END)
        fh.write("…the last line ✓\n".encode())
    before = bytes_read_by_this_process()
    tail = job.log_tail(100)
    assert bytes_read_by_this_process() - before < 2**20, "the tail must seek to the end, not read the file"
    assert tail.endswith("…the last line ✓\n") and len(tail.encode()) <= 100


def test_tail_of_a_cut_character_is_replaced_not_an_error(tmp_path):
    log = tmp_path / "a.log"
    log.write_text("训练完成")  # 3 bytes a character: 4 bytes from the end cut the third one
    assert tail_text(log, 4) == "\ufffd成"


def test_detached_worker_has_its_own_session_the_project_env_and_a_log(tmp_path, monkeypatch):
    monkeypatch.delenv("PYTHONPATH", raising=False)
    log = tmp_path / "logs" / "worker.log"  # the launcher makes the folder
    proc = launch("tests.runs.probe_worker", ["a", tmp_path], log)
    assert proc.wait(timeout=60) == 0  # stdin is closed: the probe's echo loop ends at once
    report, stderr_line = log.read_text().splitlines()
    report = json.loads(report)
    assert report["sid"] == report["pid"] == proc.pid, "a detached worker leads its own session"
    assert report["args"] == ["a", str(tmp_path)]
    assert report["unbuffered"] == "1" and report["pythonpath"] == str(PROJECT_ROOT)
    assert report["cwd"] == str(PROJECT_ROOT) and stderr_line == "probe: to stderr"


def test_a_worker_keeps_the_users_pythonpath_after_the_project(tmp_path, monkeypatch):
    """Packages installed with `pip --target` are found through PYTHONPATH; the worker must see them too."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(["/opt/site-extra", str(PROJECT_ROOT)]))
    log = tmp_path / "worker.log"
    assert launch("tests.runs.probe_worker", [], log).wait(timeout=60) == 0
    report = json.loads(log.read_text().splitlines()[0])
    assert report["pythonpath"].split(os.pathsep) == [str(PROJECT_ROOT), "/opt/site-extra"]


def test_piped_worker_talks_over_stdin_and_stdout_and_logs_stderr(tmp_path):
    log = tmp_path / "chat.log"
    proc = launch("tests.runs.probe_worker", [], log, piped=True)
    report = json.loads(proc.stdout.readline())
    assert report["sid"] == os.getsid(0), "a piped worker stays in its parent's session"
    proc.stdin.write(b'{"op": "ping"}\n')
    proc.stdin.flush()
    assert proc.stdout.readline() == b'{"op": "ping"}\n'
    proc.stdin.close()
    assert proc.wait(timeout=60) == 0
    assert log.read_text() == "probe: to stderr\n"  # only stderr goes to the log
    proc.stdout.close()


def test_a_worker_that_cannot_start_marks_its_job_failed(kind, tmp_path, monkeypatch):
    job = kind[0](tmp_path)
    job.write_status(state="queued", pid=None)
    monkeypatch.setattr(sys, "executable", str(tmp_path / "no-such-python"))
    with pytest.raises(LaunchError, match="could not start .*no-such-python"):
        launch("tests.runs.probe_worker", [], job.log_file, job=job)
    status = job.status()
    assert status["state"] == "failed" and status["error"]["kind"] == "FileNotFoundError"
    assert "no-such-python" in status["error"]["message"] and not job.is_active()


def test_a_launched_job_records_the_workers_pid(tmp_path):
    job = RunFolder(tmp_path)
    job.write_status(state="queued", pid=None)
    proc = launch("tests.runs.probe_worker", [], job.log_file, job=job)
    assert job.raw_status()["pid"] == proc.pid and job.raw_status()["state"] == "queued"
    proc.wait(timeout=60)
    wait_until(lambda: not job.is_active(), 10, "the ended probe to read as dead")
    assert job.status()["error"]["kind"] == "ProcessDied"  # it never reported: the died rule applies
