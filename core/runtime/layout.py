"""How a job is laid out over processes and machines, and which layouts are refused.

`runtime.processes` training processes on each of `runtime.nodes` machines make the world; `runtime.strategy`
says how they share the work. `single` is one plain trainer process; every other strategy goes through
accelerate (a launcher process and its ranks, see core/training/group.py), even with one process: FSDP and
DeepSpeed on one GPU still shard to, and offload into, CPU memory.

Two kinds of rules, as for the rest of the spec: `layout_problems` reads the spec alone (it runs whenever a
job is parsed), `launch_problems` looks at this machine (only at Start).
"""
from __future__ import annotations

from core.runtime.device import device_problem, gpu_ids, pick_device

DEEPSPEED = ("deepspeed2", "deepspeed3")
SHARDED = ("fsdp", "deepspeed3")          # the weights themselves are split among the processes
GPU_ONLY = ("fsdp", *DEEPSPEED)          # accelerate runs these on CUDA GPUs only

Problem = tuple[str, str]


def world_size(spec) -> int:
    return spec.runtime.processes * spec.runtime.nodes


def in_group(spec) -> bool:
    """True when the job trains through accelerate's launcher (several processes, or FSDP/DeepSpeed)."""
    return strategy_in_group(spec.runtime.strategy)


def strategy_in_group(strategy: str) -> bool:
    return strategy != "single"


def sharded(spec) -> bool:
    return spec.runtime.strategy in SHARDED


def splits_optimiser(spec) -> bool:
    """FSDP and DeepSpeed hand the optimiser flattened shards, not whole matrices."""
    return spec.runtime.strategy in GPU_ONLY


def threads_per_process(spec, cores: int) -> int:
    """CPU threads each training process uses: the job's number, else this machine's cores shared evenly
    (2 cores and 2 processes: 1 thread each; more threads than cores only makes the processes fight)."""
    return spec.runtime.threads or max(1, cores // spec.runtime.processes)


def layout_problems(spec) -> list[Problem]:
    """What is wrong with the runtime section from the spec alone."""
    r = spec.runtime
    problems = []
    why = device_problem(r.device)
    if why:
        return [("runtime.device", why)]
    world = world_size(spec)
    if r.node_rank >= r.nodes:
        problems.append(("runtime.node_rank", f"{r.node_rank} is not a node of this job: with runtime.nodes={r.nodes} "
                                              f"the nodes are numbered 0 to {r.nodes - 1}"))
    if r.strategy == "single" and world > 1:
        problems.append(("runtime.strategy", f"single trains in one process, but runtime.processes x runtime.nodes "
                                             f"is {world}; pick ddp (or fsdp, deepspeed2, deepspeed3 on GPUs)"))
    if r.strategy == "ddp" and world == 1:
        problems.append(("runtime.strategy", "ddp splits each batch among several processes, and this job has one; "
                                             "raise runtime.processes (or runtime.nodes), or pick single"))
    ids = gpu_ids(r.device)
    if ids and r.processes != len(ids):
        problems.append(("runtime.processes", f"runtime.device names {len(ids)} GPU(s) ({r.device}) for "
                                              f"{r.processes} process(es): each process trains on one GPU, so set "
                                              f"runtime.processes to {len(ids)}"))
    if ids == [] and r.strategy in GPU_ONLY:
        problems.append(("runtime.strategy", f"{r.strategy} needs CUDA GPUs and runtime.device is cpu; "
                                             "on the CPU use ddp"))
    return problems


def launch_problems(spec, *, cuda_count: int | None = None, cores: int | None = None) -> list[Problem]:
    """What this machine cannot do of the job's layout. `cuda_count` and `cores` default to what it has."""
    from core.runtime.hardware import cpu_cores

    r = spec.runtime
    problems = []
    if cuda_count is None:
        import torch

        cuda_count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    device = ("cuda" if cuda_count else "cpu") if r.device == "auto" else pick_device(r.device)
    ids = gpu_ids(r.device)
    if device == "cuda":
        if not cuda_count:
            return [("runtime.device", f"{r.device} asks for a CUDA GPU, and no CUDA GPU is visible here; use auto or cpu")]
        missing = [i for i in ids or [] if i >= cuda_count]
        if missing:
            problems.append(("runtime.device", f"GPU {missing[0]} does not exist here: this machine has {cuda_count} "
                                               f"(ids 0 to {cuda_count - 1})"))
        elif r.processes > len(ids or range(cuda_count)):
            problems.append(("runtime.processes", f"{r.processes} processes for {len(ids or range(cuda_count))} GPU(s): "
                                                  "at most one process per GPU"))
    else:
        cores = cores or cpu_cores()
        if r.processes > cores:
            problems.append(("runtime.processes", f"{r.processes} processes but this machine has {cores} CPU cores: "
                                                  "at most one process per core"))
        if r.strategy in GPU_ONLY:
            problems.append(("runtime.strategy", f"{r.strategy} needs CUDA GPUs, and this run would train on the CPU "
                                                 "(no GPU here); on the CPU use ddp"))
    if r.strategy in DEEPSPEED and not deepspeed_installed():
        problems.append(("runtime.strategy", f"{r.strategy} needs the deepspeed package, which is not installed "
                                             "(pip install deepspeed; it builds against CUDA)"))
    if r.nodes > 1 and r.node_rank == 0 and port_in_use(r.main_port):
        problems.append(("runtime.main_port", f"port {r.main_port} is already in use on this machine; the other "
                                              "nodes could not reach this one there. Pick another port"))
    return problems


def deepspeed_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("deepspeed") is not None


def port_in_use(port: int) -> bool:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        return s.connect_ex(("127.0.0.1", port)) == 0
