"""Export bounds: an export that would not fit on the disk is refused before it starts, naming the space it
needs and the space there is; the web UI runs one export at a time per workspace, whoever asks."""
from __future__ import annotations

import json
import os
import shutil
from collections import namedtuple
from pathlib import Path

import pytest

from core.export import job as export_job
from core.export.options import ExportError, ExportOptions, check_options, expected_bytes, shard_bytes
from core.runs.folder import RunFolder
from core.spec import dump_spec
from tests.helpers import tiny_spec

Usage = namedtuple("Usage", "total used free")


@pytest.fixture
def finished_run(tmp_path, tiny_model_dir) -> RunFolder:
    """A run folder that reads as finished with an adapter: enough for the checks before an export starts."""
    run = RunFolder(tmp_path / "ws" / "runs" / "r1")
    (run.path / "adapter").mkdir(parents=True)
    run.job.write_text(dump_spec(tiny_spec(tiny_model_dir)))
    run.status_file.write_text(json.dumps({"state": "completed"}))
    (run.path / "adapter" / "adapter_config.json").write_text("{}")
    (run.path / "adapter" / "adapter_model.safetensors").write_bytes(b"w" * 100)  # an adapter without weights is not usable
    return run


def test_expected_size_follows_dtype_and_gguf(finished_run):
    float32 = expected_bytes(finished_run, ExportOptions(dtype="float32"))
    half = expected_bytes(finished_run, ExportOptions(dtype="bfloat16"))
    both = expected_bytes(finished_run, ExportOptions(dtype="float32", gguf=["f16", "q8_0"]))
    assert half < float32 < both
    params = 49152 * 64  # at least the tiny model's embedding
    assert float32 > 4 * params


def test_an_export_that_would_not_fit_is_refused_before_it_starts(finished_run, tmp_path, monkeypatch):
    out = tmp_path / "ws" / "exports" / "m"
    options = ExportOptions(run=str(finished_run.path), out=str(out))
    assert check_options(options).out == str(out)  # room enough on this disk
    monkeypatch.setattr(shutil, "disk_usage", lambda path: Usage(10 * 2**30, 10 * 2**30 - 2**20, 2**20))
    with pytest.raises(ExportError) as err:
        check_options(options)
    assert err.value.option == "out" and "needs about 0.0" in err.value.message and "0.00 GB free" in err.value.message
    assert not out.exists() and not (tmp_path / "ws" / "exports").exists()


def test_one_ui_export_at_a_time_per_workspace(finished_run, tmp_path):
    workspace = tmp_path / "ws"
    running = export_job.ExportJob(export_job.exports_dir(workspace) / "20250101-000000-r1-abcd")
    running.path.mkdir(parents=True)
    running.request_file.write_text(json.dumps(ExportOptions(run="r1", out="x").to_dict()))
    running.write_status(state="running", pid=os.getpid())  # a live process: this one
    options = ExportOptions(run=str(finished_run.path), out=str(workspace / "exports" / "second"))
    with pytest.raises(export_job.ExportBusy, match=running.job_id):
        export_job.start(options, workspace, exclusive=True)
    assert export_job.active_job(workspace).job_id == running.job_id
    assert len(export_job.list_jobs(workspace)) == 1 and not Path(options.out).exists()
    running.write_status(state="completed")
    assert export_job.active_job(workspace) is None


@pytest.mark.parametrize("size, said", [("0GB", "out of bounds"), ("0.5KB", "out of bounds"),
                                        ("99999999999GB", "out of bounds"), ("1001GB", "out of bounds"),
                                        ("-1GB", "not a size"), ("2 TB", "not a size"), ("1e3MB", "not a size"),
                                        ("", "not a size")])
def test_shard_sizes_outside_the_bounds_are_refused_naming_the_option(finished_run, tmp_path, size, said):
    out = tmp_path / "ws" / "exports" / "m"
    with pytest.raises(ExportError) as err:
        check_options(ExportOptions(run=str(finished_run.path), out=str(out), shard_size=size))
    assert err.value.option == "shard_size" and said in err.value.message
    assert not out.exists()


@pytest.mark.parametrize("size, expected", [("1MB", 10**6), ("2.5gb", 2_500_000_000), (" 500 MB ", 5 * 10**8),
                                            ("1000GB", 10**12)])
def test_shard_sizes_inside_the_bounds_are_bytes_the_save_accepts(size, expected):
    import torch
    from huggingface_hub import split_torch_state_dict_into_shards
    from huggingface_hub.serialization._base import parse_size_to_int  # what save_pretrained reads a size with

    assert shard_bytes(size) == expected == parse_size_to_int(size.strip().replace(" ", ""))
    state = {f"w{i}": torch.zeros(250_000) for i in range(4)}  # four 1 MB tensors
    split = split_torch_state_dict_into_shards(state, max_shard_size=shard_bytes(size))
    assert len(split.filename_to_tensors) == (4 if expected < 2 * 10**6 else 1)


def test_a_system_prompt_longer_than_the_limit_is_refused(finished_run, tmp_path):
    from core.export.options import MAX_SYSTEM_CHARS

    out = tmp_path / "ws" / "exports" / "m"
    options = ExportOptions(run=str(finished_run.path), out=str(out), ollama=True, system="x" * (MAX_SYSTEM_CHARS + 1))
    with pytest.raises(ExportError) as err:
        check_options(options)
    assert err.value.option == "system" and str(MAX_SYSTEM_CHARS) in err.value.message and not out.exists()
    check_options(ExportOptions(**{**options.to_dict(), "system": "x" * MAX_SYSTEM_CHARS}))
