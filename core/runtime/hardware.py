"""What this machine has to train on: its GPUs (index, name, memory) and its CPU cores.

GPUs are read through NVML (nvidia-ml-py) when its library is there: it does not create a CUDA context,
so the UI process can list GPUs without taking GPU memory. Without NVML, torch.cuda answers (it does
create a context, in whatever process asks). Neither finds anything on a machine without NVIDIA GPUs,
and that is not an error.
"""
from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Gpu:
    index: int          # as nvidia-smi numbers it (PCI bus order); runtime.device ids use these
    name: str
    memory_mb: int      # total memory


def cpu_cores() -> int:
    """Cores this process may run on (its affinity mask, which a container or taskset narrows)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def open_nvml():
    """The pynvml module, initialised (NVML counts its users; nvmlShutdown undoes one nvmlInit); None when NVML
    is not there: nvidia-ml-py not installed, or no NVIDIA driver library on this machine."""
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return None
    return pynvml


def _nvml_gpus() -> list[Gpu] | None:
    """GPUs as NVML lists them, or None when NVML cannot be used here."""
    pynvml = open_nvml()
    if pynvml is None:
        return None
    try:
        found = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            name = pynvml.nvmlDeviceGetName(handle)
            memory = pynvml.nvmlDeviceGetMemoryInfo(handle).total
            found.append(Gpu(index, name.decode() if isinstance(name, bytes) else name, memory // 2**20))
        return found
    finally:
        pynvml.nvmlShutdown()


def _torch_gpus() -> list[Gpu]:
    import torch

    if not torch.cuda.is_available():
        return []
    return [Gpu(i, torch.cuda.get_device_properties(i).name, torch.cuda.get_device_properties(i).total_memory // 2**20)
            for i in range(torch.cuda.device_count())]


def gpus() -> list[Gpu]:
    found = _nvml_gpus()
    return found if found is not None else _torch_gpus()
