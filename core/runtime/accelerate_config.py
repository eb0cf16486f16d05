"""The accelerate config a group run is launched with, written into its run folder as accelerate.yaml,
and the `accelerate launch` arguments that use it.

One file per run, generated from the job's runtime section, so the launch is replayable by hand
(`accelerate launch --config_file RUN/accelerate.yaml ...`, printed at the top of train.log) and nothing
depends on a user's ~/.cache/huggingface/accelerate/default_config.yaml.

On a CPU, DDP runs on gloo, and two settings that look natural do not work (accelerate 1.15):
- `use_cpu: true` in the config (or `--cpu`) makes `accelerate launch` take its simple launcher, which
  starts several processes only through mpirun; without it, it starts ONE process and the run is silently
  not distributed.
- `distributed_type: MULTI_CPU` takes that same simple launcher.
So the config says MULTI_GPU with use_cpu false: `accelerate launch` then runs torchrun (one process per
rank, with RANK/LOCAL_RANK/WORLD_SIZE), and the trainer's TrainingArguments(use_cpu=True) makes
accelerate's state pick MULTI_CPU with the gloo backend (torch here has no MPI), see
accelerate/state.py `_prepare_backend`. On GPUs the same config gives NCCL.
"""
from __future__ import annotations

from pathlib import Path

import yaml

from core.runtime.device import gpu_ids, pick_precision
from core.runtime.layout import world_size

CONFIG_NAME = "accelerate.yaml"
DISTRIBUTED_TYPE = {"ddp": "MULTI_GPU", "fsdp": "FSDP", "deepspeed2": "DEEPSPEED", "deepspeed3": "DEEPSPEED"}
MIXED_PRECISION = {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}
# Torchrun prefixes every line a worker prints with this (global rank, not local: several nodes' logs read alike).
RANK_PREFIX = "[rank${rank}]:"


def fsdp_config() -> dict:
    """FSDP2, full shard (weights resharded after each forward), parameters offloaded to CPU memory,
    one unit per transformer block (the model's own _no_split_modules), weights read once on rank 0 and
    broadcast, and a full (unsharded) state dict at save so the adapter is written whole."""
    return {
        "fsdp_version": 2,
        "fsdp_reshard_after_forward": True,
        "fsdp_offload_params": True,
        "fsdp_auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
        "fsdp_cpu_ram_efficient_loading": True,
        "fsdp_state_dict_type": "FULL_STATE_DICT",
        "fsdp_activation_checkpointing": False,
    }


def deepspeed_config(spec) -> dict:
    """ZeRO-2 (optimiser state and gradients split) or ZeRO-3 (weights too) with its weights and optimiser
    state offloaded to CPU memory. Accumulation and clipping are the job's, so DeepSpeed and the Trainer agree;
    the launcher is torchrun ("standard") on several nodes too, so every layout launches the same way."""
    stage = 3 if spec.runtime.strategy == "deepspeed3" else 2
    offload = "cpu" if stage == 3 else "none"
    return {
        "zero_stage": stage,
        "offload_optimizer_device": offload,
        "offload_param_device": offload,
        "zero3_init_flag": stage == 3,
        "zero3_save_16bit_model": stage == 3,
        "gradient_accumulation_steps": spec.train.grad_accum,
        "gradient_clipping": spec.train.max_grad_norm or 1e9,  # 0 means no clipping here; DeepSpeed wants a bound
        "deepspeed_multinode_launcher": "standard",
    }


def accelerate_config(spec, device: str) -> dict:
    """The config for this node of the job; `device` is what it trains on here ("cuda" or "cpu")."""
    r = spec.runtime
    ids = gpu_ids(r.device)
    config = {
        "compute_environment": "LOCAL_MACHINE",
        "distributed_type": DISTRIBUTED_TYPE[r.strategy],
        "num_processes": world_size(spec),  # accelerate counts all nodes' processes together
        "num_machines": r.nodes,
        "machine_rank": r.node_rank,
        # Static rendezvous at the main node's address; one machine takes any free port (0) instead.
        "main_process_ip": r.main_address,
        "main_process_port": r.main_port if r.nodes > 1 else 0,
        "rdzv_backend": "static",
        "same_network": True,
        "gpu_ids": ",".join(map(str, ids)) if ids else "all",
        "mixed_precision": MIXED_PRECISION[pick_precision(r.precision, device)],
        "use_cpu": False,  # even on a CPU: see the module's note
        "downcast_bf16": "no",
        "debug": False,
        "tpu_use_cluster": False,
        "tpu_use_sudo": False,
        "tpu_env": [],
    }
    if r.strategy == "fsdp":
        config["fsdp_config"] = fsdp_config()
    if r.strategy in ("deepspeed2", "deepspeed3"):
        config["deepspeed_config"] = deepspeed_config(spec)
    return config


def write_config(spec, device: str, run_path: Path) -> Path:
    from core.runs.folder import write_atomic

    path = Path(run_path) / CONFIG_NAME
    write_atomic(path, yaml.safe_dump(accelerate_config(spec, device), sort_keys=False))
    return path


def launch_arguments(config_file: Path, job_file: Path, log_dir: Path) -> list[str]:
    """`accelerate launch` arguments: the run's config, every rank's output teed into train.log (with
    RANK_PREFIX set in the environment) and kept per rank under log_dir, workers checked twice a second,
    and the trainer as a module with the run's job.yaml."""
    return ["--config_file", str(config_file), "--tee", "3", "--log_dir", str(log_dir), "--monitor_interval", "0.5",
            "--module", "core.training.trainer", str(job_file)]
