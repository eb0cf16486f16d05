"""The device's measured matmul peak (GFLOP/s), cached so the trainer and `params` need not re-measure.

The cache keeps the best figure seen per device, dtype and thread count: a measurement taken while
other work shares the machine can only be lower than what the hardware does.
"""
from __future__ import annotations

import json
import os
import time

import torch

from core.paths import PROJECT_ROOT

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def cache_file():
    from pathlib import Path

    return Path(os.environ.get("LORA_WORKBENCH_CACHE", PROJECT_ROOT / "workspace" / ".cache")) / "matmul_peak.json"


def matmul_gflops(dtype: torch.dtype, device: str, n: int = 2048, budget_s: float = 5.0) -> tuple[float, int]:
    """Best-of-several n x n torch.mm in GFLOP/s, and how many timed repeats it took.

    The best repeat, not the mean, because shared machines have noisy neighbours and
    the peak is what the hardware can do. Repeats stop after budget_s, so an
    emulated dtype (bf16 on a CPU without it) does not take minutes.
    """
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    torch.mm(a, b)  # warm-up: the first call pays for allocation and kernel choice
    sync()
    best, spent, reps = float("inf"), 0.0, 0
    while reps < 10 and (reps < 3 or spent < budget_s):
        t0 = time.perf_counter()
        torch.mm(a, b)
        sync()
        took = time.perf_counter() - t0
        best, spent, reps = min(best, took), spent + took, reps + 1
    return 2 * n**3 / best / 1e9, reps


def _key(device: str, precision: str, threads: int) -> str:
    if device == "cuda":
        name = torch.cuda.get_device_name(0)
    else:
        name = "cpu"
        try:
            with open("/proc/cpuinfo") as fh:
                name = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), name)
        except OSError:
            pass
    return f"{device}|{name}|{precision}|{threads}"


def _read() -> dict:
    try:
        return json.loads(cache_file().read_text())
    except (OSError, ValueError):
        return {}


def remember(device: str, precision: str, threads: int, gflops: float) -> float:
    """Store a measurement; returns the best figure known for that key."""
    from core.runs.folder import write_atomic

    data = _read()
    key = _key(device, precision, threads)
    best = max(gflops, data.get(key, 0.0))
    data[key] = round(best, 1)
    try:
        cache_file().parent.mkdir(parents=True, exist_ok=True)
        write_atomic(cache_file(), json.dumps(data, indent=1))
    except OSError:
        pass  # a read-only checkout still gets the figure, just not cached
    return best


def matmul_peak(device: str, precision: str = "fp32", threads: int | None = None, measure: bool = True) -> float | None:
    """The cached peak, or a quick measurement (1024 x 1024, well under a second) stored for next time;
    None when nothing is cached and `measure` is off."""
    threads = threads or torch.get_num_threads()
    known = _read().get(_key(device, precision, threads))
    if known or not measure:
        return known
    gflops, _ = matmul_gflops(DTYPES[precision], device, n=1024, budget_s=0.5)
    return remember(device, precision, threads, gflops)
