"""Layouts that cannot run are refused before anything launches, naming the field; the accelerate configs the
runner writes for the layouts that can are accepted by accelerate's own loader."""
from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from core.paths import PROJECT_ROOT
from core.runtime.layout import launch_problems
from core.spec import SpecError, spec_from_dict
from tests.helpers import tiny_job


def refused_fields(job: dict) -> dict[str, str]:
    with pytest.raises(SpecError) as err:
        spec_from_dict(job)
    return dict(err.value.problems)


def layout(method="lora", **runtime):
    return spec_from_dict({"method": method, "runtime": runtime})


# --- from the spec alone (every parse: the form, the YAML, --set) ----------------------------------------------

def test_qlora_with_zero3_needs_the_4bit_storage_dtype():
    problems = refused_fields({"method": "qlora", "runtime": {"strategy": "deepspeed3", "processes": 2}})
    assert "quant.storage_dtype" in problems and "fp32" in problems["quant.storage_dtype"]
    spec = spec_from_dict({"method": "qlora", "quant": {"storage_dtype": "fp32"},
                           "runtime": {"strategy": "deepspeed3", "processes": 2}})
    assert spec.quant.storage_dtype == "fp32"  # with fp32 storage the same layout parses
    # 8-bit weights cannot be sharded at all; FSDP shards as ZeRO-3 does
    assert "quant.bits" in refused_fields({"method": "qlora", "quant": {"bits": 8},
                                           "runtime": {"strategy": "fsdp", "processes": 2}})
    assert "quant.storage_dtype" in refused_fields({"method": "qlora", "runtime": {"strategy": "fsdp", "processes": 2}})
    layout("qlora", strategy="ddp", processes=2)  # DDP keeps whole weights: uint8 storage is fine


def test_fsdp_and_deepspeed_on_the_cpu_are_refused():
    for strategy in ("fsdp", "deepspeed2", "deepspeed3"):
        problems = refused_fields({"method": "lora", "runtime": {"device": "cpu", "strategy": strategy, "processes": 2}})
        assert "needs CUDA GPUs" in problems["runtime.strategy"], problems
    # device auto on a machine without GPUs trains on the CPU: refused at launch, naming the same field
    problems = dict(launch_problems(layout(strategy="fsdp", processes=2), cuda_count=0, cores=2))
    assert "needs CUDA GPUs" in problems["runtime.strategy"]


def test_more_processes_than_devices_is_refused():
    problems = dict(launch_problems(layout(strategy="ddp", processes=3, device="cpu"), cuda_count=0, cores=2))
    assert "3 processes but this machine has 2 CPU cores" in problems["runtime.processes"]
    problems = dict(launch_problems(layout(strategy="ddp", processes=3, device="cuda"), cuda_count=2))
    assert "3 processes for 2 GPU(s)" in problems["runtime.processes"]
    problems = dict(launch_problems(layout(strategy="ddp", processes=2, device="0,1"), cuda_count=1))
    assert "GPU 1 does not exist here" in problems["runtime.device"]
    assert "runtime.processes" in refused_fields({"method": "lora", "runtime": {"device": "0,1", "processes": 3,
                                                                                 "strategy": "ddp"}})
    assert launch_problems(layout(strategy="ddp", processes=2, device="cpu"), cuda_count=0, cores=2) == []
    assert launch_problems(layout(strategy="ddp", processes=2, device="0,1"), cuda_count=2) == []


def test_single_and_ddp_must_match_the_process_count():
    assert "runtime.strategy" in refused_fields({"method": "lora", "runtime": {"processes": 2}})
    assert "runtime.strategy" in refused_fields({"method": "lora", "runtime": {"strategy": "ddp"}})
    assert "runtime.node_rank" in refused_fields({"method": "lora", "runtime": {"node_rank": 1, "strategy": "ddp",
                                                                                  "processes": 2}})


def test_a_refused_layout_launches_nothing(tiny_model_dir, tmp_path):
    """app.py train names the field and exits before a run folder exists."""
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump(tiny_job(tiny_model_dir, runtime={"strategy": "ddp", "processes": 3})))
    result = subprocess.run([sys.executable, "app.py", "train", str(job), "--workspace", str(tmp_path / "ws")],
                            cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "runtime.processes" in result.stderr and "CPU cores" in result.stderr, result.stderr
    assert not (tmp_path / "ws" / "runs").exists() or not any((tmp_path / "ws" / "runs").iterdir())


# --- the accelerate configs, through accelerate's own loader -------------------------------------------------

def accepted(strategy: str, tmp_path, **runtime):
    """`accelerate launch`'s own reading of the config the runner writes (its config file loader and the
    launch-argument merge), for a 2-GPU node."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser

    from core.runtime.accelerate_config import launch_arguments, write_config

    spec = layout(strategy=strategy, processes=2, device="0,1", **runtime)
    config = write_config(spec, "cuda", tmp_path)
    args = launch_command_parser().parse_args(launch_arguments(config, tmp_path / "job.yaml", tmp_path / "ranks"))
    args, _, _ = _validate_launch_command(args)
    return args


def test_ddp_config_is_accepted_by_accelerate(tmp_path):
    args = accepted("ddp", tmp_path)
    assert (args.multi_gpu, args.use_fsdp, args.use_deepspeed) == (True, False, False)
    assert (args.num_processes, args.num_machines, args.gpu_ids) == (2, 1, "0,1")


def test_fsdp_config_is_accepted_by_accelerate(tmp_path, monkeypatch):
    from accelerate.utils import FullyShardedDataParallelPlugin
    from accelerate.utils.launch import prepare_multi_gpu_env

    args = accepted("fsdp", tmp_path)
    assert args.use_fsdp and args.num_processes == 2
    # What the launcher hands each rank, read back by accelerate's FSDP plugin: full shard with CPU offload.
    for key, value in prepare_multi_gpu_env(args).items():
        monkeypatch.setenv(key, value)
    plugin = FullyShardedDataParallelPlugin()
    assert plugin.fsdp_version == 2 and plugin.reshard_after_forward is True
    assert type(plugin.cpu_offload).__name__ == "CPUOffloadPolicy"
    assert plugin.state_dict_type.name == "FULL_STATE_DICT"


@pytest.mark.parametrize("strategy,stage,offload", [("deepspeed2", 2, "none"), ("deepspeed3", 3, "cpu")])
def test_deepspeed_config_is_accepted_by_accelerate(tmp_path, monkeypatch, strategy, stage, offload):
    args = accepted(strategy, tmp_path)
    assert args.use_deepspeed and (int(args.zero_stage), args.offload_param_device) == (stage, offload)
    pytest.importorskip("deepspeed", reason="DeepSpeed is an optional install (pip install deepspeed): its own "
                                            "plugin check of the config is skipped here")
    from accelerate.utils import DeepSpeedPlugin
    from accelerate.utils.launch import prepare_deepspeed_cmd_env

    for key, value in prepare_deepspeed_cmd_env(args)[1].items():
        monkeypatch.setenv(key, value)
    assert DeepSpeedPlugin().zero_stage == stage
