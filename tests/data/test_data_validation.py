"""Malformed data is reported with its location, all at once, before anything launches."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.data.source import check_dataset
from core.paths import PROJECT_ROOT
from core.spec import SpecError
from tests.helpers import tiny_job

ROOT = PROJECT_ROOT
GOOD = json.dumps({"instruction": "hi", "output": "hello"})


def write(path: Path, text: str | bytes) -> str:
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return str(path)


def test_bad_json_line_is_named_and_every_problem_listed(tmp_path):
    path = write(tmp_path / "d.jsonl", "\n".join([GOOD, "{not json", GOOD, '{"instruction": "q", "output": ""}',
                                                  '["a list"]', GOOD]) + "\n")
    report = check_dataset(path)
    assert not report.usable and report.total_problems == 3 and report.num_samples == 6
    text = "\n".join(report.lines())
    assert "line 2: invalid JSON" in text
    assert "line 4: missing or empty field 'output'" in text
    assert "line 5: expected a JSON object" in text


def test_missing_field_in_a_json_array_names_sample_and_line(tmp_path):
    rows = [{"instruction": "a", "output": "b"}, {"instruction": "c"}]
    path = write(tmp_path / "d.json", json.dumps(rows, indent=1))
    [problem] = check_dataset(path).problems
    assert "sample 2 (line 6)" in problem and "'output'" in problem


def test_wrong_role_order_is_named(tmp_path):
    turns = [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}, {"role": "assistant", "content": "c"}]
    ends_with_user = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}]
    path = write(tmp_path / "d.jsonl", json.dumps({"messages": turns}) + "\n" + json.dumps({"messages": ends_with_user}) + "\n")
    first, second = check_dataset(path).problems
    assert "line 1: wrong role order: turn 2 is 'user' after a 'user' turn" in first
    assert "line 2" in second and "must end with an assistant answer" in second


def test_binary_and_non_utf8_files(tmp_path):
    binary = write(tmp_path / "model.jsonl", bytes(range(256)) * 40)
    report = check_dataset(binary)
    assert not report.usable and "binary file" in report.fatal
    latin = write(tmp_path / "latin.json", b'[\n{"instruction": "caf\xe9", "output": "x"}\n]')
    assert "line 2: not UTF-8" in check_dataset(latin).fatal


def test_empty_files(tmp_path):
    for name, text in [("e.jsonl", ""), ("e.json", "  \n"), ("e.txt", "\n\n"), ("e.json2.json", "[]")]:
        report = check_dataset(write(tmp_path / name, text))
        assert not report.usable and ("empty" in report.fatal or "no samples" in report.fatal), (name, report.fatal)


def test_ten_megabyte_single_line_is_reported_briefly(tmp_path):
    huge = '{"instruction": "' + "x" * 10_000_000 + '", "output": '  # cut off: invalid JSON
    path = write(tmp_path / "big.jsonl", huge)
    started = time.time()
    report = check_dataset(path)
    assert "line 1: the row is 10.0 MB; a sample may be at most 2 MB" in report.problems[0]  # not even parsed
    assert len(report.problems[0]) < 400  # the message quotes a snippet, not 10 MB
    assert time.time() - started < 20


def test_problems_are_capped(tmp_path):
    path = write(tmp_path / "d.jsonl", "{bad\n" * 500)
    report = check_dataset(path, cap=50)
    assert report.total_problems == 500 and len(report.problems) == 50
    assert report.lines()[-1] == "... and 450 more problems"


def test_ranking_and_unknown_and_missing(tmp_path):
    prefs = write(tmp_path / "p.jsonl", json.dumps({"instruction": "q", "chosen": "a", "rejected": "b"}) + "\n")
    assert "preference pairs" in check_dataset(prefs).fatal
    assert "not found" in check_dataset(str(tmp_path / "nope.jsonl")).fatal


def test_hub_id_offline_gives_a_clear_message_quickly(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    started = time.time()
    report = check_dataset("someone/some-dataset")
    assert "needs a network" in report.fatal and time.time() - started < 5


def test_launch_refuses_bad_data_before_any_run_folder(tmp_path, tiny_model_dir, workspace):
    bad = write(tmp_path / "d.jsonl", GOOD + "\n{oops\n")
    from core.spec import check_launch, spec_from_dict

    spec = spec_from_dict(tiny_job(tiny_model_dir, data={"dataset": bad}))  # parsing never reads the data
    with pytest.raises(SpecError) as caught:
        check_launch(spec)
    assert caught.value.problems[0][0] == "data.dataset" and "line 2: invalid JSON" in caught.value.problems[0][1]
    job = tmp_path / "job.yaml"
    job.write_text(f"model: {{path: '{tiny_model_dir}'}}\ndata: {{dataset: '{bad}'}}\n")
    train = subprocess.run([sys.executable, "app.py", "train", str(job), "--workspace", str(workspace)], cwd=ROOT,
                           capture_output=True, text=True, timeout=120)
    assert train.returncode == 2 and "line 2: invalid JSON" in train.stderr
    assert not (workspace / "runs").exists()


def test_data_check_command(tmp_path):
    bad = write(tmp_path / "d.jsonl", GOOD + "\n{oops\n")
    result = subprocess.run([sys.executable, "app.py", "data", "check", bad], cwd=ROOT, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 1 and "line 2: invalid JSON" in result.stdout
    good = subprocess.run([sys.executable, "app.py", "data", "check", "identity"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert good.returncode == 0 and "no problems" in good.stdout
