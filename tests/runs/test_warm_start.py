"""Warm start (core/runs/warm_start.py, warm_host.py): a run forked from a host that has imported the libraries
trains exactly as one started in a new interpreter, an export of it is forked too; the host serves only this
user and only the modules it names."""
from __future__ import annotations

import json
import socket
import tempfile
from pathlib import Path

import pytest

from core.export import job as export_job
from core.export.options import ExportOptions
from core.paths import WORKSPACE_ENV
from core.runs import runner, supervisor, warm_host, warm_start
from core.runs.folder import RunFolder, pid_alive
from core.runs.launch import worker_env
from core.runs.supervisor import can_fork_trainer, trainer_command
from core.spec import dump_spec
from tests.helpers import tiny_spec, wait_for_end, wait_until


def adapter_tensors(run):
    from safetensors.torch import load_file

    return load_file(run.adapter_dir / "adapter_model.safetensors")


def ask(sock_path, request: bytes) -> dict:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(30)
        conn.connect(str(sock_path))
        conn.sendall(request)
        return json.loads(conn.makefile("rb").readline())


def test_a_run_forked_from_the_warm_host_trains_like_a_cold_one(tiny_model_dir, tmp_path, own_runtime):
    import torch

    spec = tiny_spec(tiny_model_dir, runtime={"device": "cpu"})  # so on a GPU machine too (tests/runtime/test_gpu.py)
    cold = runner.start(spec, tmp_path / "ws-cold")  # no host yet: launched as always, and a host is started
    assert wait_for_end(cold)["state"] == "completed", cold.log_tail()
    sock = wait_until(lambda: next(own_runtime.glob("*.sock"), None), 180, "the warm host's socket")

    warm = runner.start(spec, tmp_path / "ws-warm")
    status = wait_for_end(warm)
    assert status["state"] == "completed", warm.log_tail()
    host_log = sock.with_suffix(".log").read_text()
    assert f"started core.runs.supervisor {warm.path}" in host_log and str(cold.path) not in host_log
    assert "bitsandbytes not loaded" in warm.log_tail()  # the host left it out; the trainer says so as before
    assert supervisor.FORKED_LINE in warm.log_file.read_text()
    assert supervisor.FORKED_LINE not in cold.log_file.read_text()
    # Same seed, same data, same steps: the same adapter, to the bit, whichever way the trainer started.
    cold_weights, warm_weights = adapter_tensors(cold), adapter_tensors(warm)
    assert cold_weights.keys() == warm_weights.keys()
    for name, tensor in cold_weights.items():
        assert torch.equal(tensor, warm_weights[name]), name

    # An export of the run (a worker of a finished run) is forked too, and writes the merged model.
    export = export_job.start(ExportOptions(run=str(warm.path), out=str(tmp_path / "merged")), tmp_path / "ws-warm")
    assert export.wait(poll_s=0.2)["state"] == "completed", export.log_tail()
    assert f"started core.export.worker {export.path}" in sock.with_suffix(".log").read_text()
    assert (tmp_path / "merged" / "config.json").is_file()

    # Only the served modules, asked in one JSON line, are started; anything else is refused, nothing forked.
    request = {"module": "os", "args": [], "log": str(tmp_path / "x.log"), "env": {}, "cwd": str(tmp_path)}
    assert "only core.runs.supervisor" in ask(sock, json.dumps(request).encode() + b"\n")["error"]
    assert "error" in ask(sock, b"not json\n")
    request.update(module="core.runs.supervisor", log="relative.log")
    assert "absolute" in ask(sock, json.dumps(request).encode() + b"\n")["error"]
    assert not (tmp_path / "x.log").exists()

    host_pid = int(sock.with_suffix(".lock").read_text())
    assert warm_start.stop_hosts() == 1
    wait_until(lambda: not pid_alive(host_pid), 30, "the host to end")
    assert not sock.exists()  # it left through its own clean-up


def test_a_runtime_folder_others_can_enter_or_too_deep_for_a_socket_means_no_warm_start(monkeypatch):
    with tempfile.TemporaryDirectory(prefix="rt-") as base:
        shared = Path(base) / "lora-workbench"
        shared.mkdir()
        shared.chmod(0o777)
        monkeypatch.setenv("XDG_RUNTIME_DIR", base)
        assert warm_start.runtime_folder() is None
        shared.chmod(0o700)
        assert warm_start.runtime_folder() == shared
        deep = Path(base) / ("d" * 80)
        deep.mkdir()
        monkeypatch.setenv("XDG_RUNTIME_DIR", str(deep))
        assert warm_start.runtime_folder() is None


def test_the_host_key_follows_the_environment_but_not_where_a_run_works(monkeypatch):
    env = worker_env()
    key = warm_start.host_key(env)
    assert warm_start.host_key({**env, WORKSPACE_ENV: "/elsewhere", "PYTEST_CURRENT_TEST": "x"}) == key
    assert warm_start.host_key({**env, "HF_HUB_OFFLINE": "0" if env.get("HF_HUB_OFFLINE") == "1" else "1"}) != key
    monkeypatch.setenv(warm_start.WARM_ENV, "0")
    assert warm_start.enabled() is False


@pytest.mark.parametrize("sections, gpus, forked", [
    ({}, [], True),
    ({"method": "qlora"}, [], False),  # needs bitsandbytes, which the host left out
    ({"runtime": {"strategy": "ddp", "processes": 2}}, [], False),  # the group launcher, not the trainer
    ({}, ["/dev/nvidia0"], False),  # device auto on a machine with a GPU
    ({"runtime": {"device": "cpu"}}, ["/dev/nvidia0"], True),
])
def test_only_a_single_process_cpu_job_without_bitsandbytes_forks_its_trainer(tiny_model_dir, tmp_path, monkeypatch,
                                                                               sections, gpus, forked):
    import yaml

    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "job.yaml").write_text(dump_spec(tiny_spec(tiny_model_dir, **sections)))
    run = RunFolder(folder)
    job = yaml.safe_load(run.job.read_text())
    monkeypatch.setattr(supervisor, "gpu_device_nodes", lambda: gpus)
    assert can_fork_trainer(trainer_command(run, job), job) is False  # not in a host's fork: never
    monkeypatch.setattr(warm_host, "in_warm_fork", True)
    assert can_fork_trainer(trainer_command(run, job), job) is forked
