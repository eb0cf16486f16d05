"""GPU telemetry for metrics.jsonl: per-GPU memory used, utilisation and power, read through NVML
(nvidia-ml-py) at every logged step.

Each record gains three maps keyed by GPU id (as nvidia-smi numbers them):
    gpu_memory_mb {"0": 10240.0, ...}   memory in use on the GPU, by every process (what nvidia-smi shows)
    gpu_utilization {"0": 97, ...}      % of the last sample period a kernel was running
    gpu_power_w {"0": 312.5, ...}       power draw in watts (absent for a GPU that does not report it)
A run on the CPU, or a machine without NVML, has none of them and no error. Only rank 0 samples, so a run
over several machines reports the main node's GPUs.
"""
from __future__ import annotations

GPU_FIELDS = ("gpu_memory_mb", "gpu_utilization", "gpu_power_w")


class GpuMeter:
    """Reads the named GPUs; used as a run-folder callback extra (metric_extras(state) -> fields)."""

    def __init__(self, pynvml, ids: list[int]):
        self.nvml = pynvml
        self.handles = {str(i): pynvml.nvmlDeviceGetHandleByIndex(i) for i in ids}

    def sample(self) -> dict:
        nvml = self.nvml
        out = {name: {} for name in GPU_FIELDS}
        for key, handle in self.handles.items():
            try:
                out["gpu_memory_mb"][key] = round(nvml.nvmlDeviceGetMemoryInfo(handle).used / 2**20, 1)
                out["gpu_utilization"][key] = nvml.nvmlDeviceGetUtilizationRates(handle).gpu
            except nvml.NVMLError:
                continue  # a GPU that stopped answering is left out of this record, not fatal to the run
            try:
                out["gpu_power_w"][key] = round(nvml.nvmlDeviceGetPowerUsage(handle) / 1000, 1)
            except nvml.NVMLError:  # some boards do not report power
                pass
        return {name: values for name, values in out.items() if values}

    def metric_extras(self, state) -> dict:
        return self.sample()


def gpu_meter(spec) -> GpuMeter | None:
    """A meter for the GPUs this job trains on, on rank 0 of a run on CUDA; else None."""
    from core.runtime.device import gpu_ids, pick_device
    from core.runtime.distributed import is_main_process
    from core.runtime.hardware import open_nvml

    if pick_device(spec.runtime.device) != "cuda" or not is_main_process():
        return None
    nvml = open_nvml()
    if nvml is None:
        return None
    ids = gpu_ids(spec.runtime.device)
    if ids is None:
        ids = list(range(nvml.nvmlDeviceGetCount()))
    try:
        return GpuMeter(nvml, ids)
    except nvml.NVMLError:
        return None
