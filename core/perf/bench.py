"""`python app.py bench JOB.yaml`: throughput, memory and MFU of one real training run.

Measures this machine's matmul peak first (never while the trainer runs, so
the two do not share cores), then launches the job exactly as `train` does
and reads every figure back from the run folder; the trainer is not told it
is being measured. Figures are printed and written to <run>/bench.json.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import torch

from core.runs import runner
from core.runs.folder import write_atomic
from core.runtime.device import cpu_has_native_bf16, pick_device, pick_precision

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


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


def model_shape(model_path: str, trust_remote_code: bool = False) -> dict:
    """Parameter count, layers and width of the base model, built on the meta device (no weights read).

    Building it here also converts the bundled model if it never was, which keeps that one-off
    cost out of the launch-to-first-step figure.
    """
    from core.models.params import meta_model

    config, model = meta_model(model_path, trust_remote_code)
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    return {
        # parameters() yields tied weights once: SmolLM2's lm_head is its embedding matrix.
        "params": sum(p.numel() for p in model.parameters()),
        "layers": getattr(text, "num_hidden_layers", None),
        "hidden": getattr(text, "hidden_size", None),
    }


def steady_state(records: list[dict]) -> dict | None:
    """Throughput over all logged intervals but the first, which holds the warm-up step.

    Each record's rates cover the interval since the previous record, so rate x
    interval gives the tokens and samples done in it; summing those and dividing by
    the total time weights every interval by its length.
    """
    train = [r for r in records if "tokens_per_second" in r]
    if len(train) < 2:
        return None
    tokens = samples = 0.0
    for prev, cur in zip(train, train[1:]):
        span = cur["elapsed_s"] - prev["elapsed_s"]
        tokens += cur["tokens_per_second"] * span
        samples += cur["samples_per_second"] * span
    seconds = train[-1]["elapsed_s"] - train[0]["elapsed_s"]
    return {
        "from_step": train[0]["step"] + 1,
        "to_step": train[-1]["step"],
        "seconds": round(seconds, 2),
        "tokens": round(tokens),
        "samples": round(samples),
        "tokens_per_s": tokens / seconds,
        "samples_per_s": samples / seconds,
    }


def run_benchmark(spec, workspace: Path) -> int:
    device = pick_device(spec.runtime.device)
    precision = pick_precision(spec.runtime.precision, device)
    # The same thread count the trainer will use (core/training/trainer.py sets it the same way).
    if spec.runtime.threads:
        torch.set_num_threads(spec.runtime.threads)
    threads = torch.get_num_threads()

    # 1. Matmul peak, in the dtype the job trains in, plus bf16 where the CPU really has it.
    wanted = {"fp32", precision} | ({"bf16"} if device == "cpu" and cpu_has_native_bf16() else set())
    load_before = os.getloadavg()[0]
    print(f"measuring matmul peak ({', '.join(sorted(wanted))}, 2048x2048, {threads} threads)...", file=sys.stderr)
    peaks = {name: matmul_gflops(DTYPES[name], device) for name in sorted(wanted)}
    shape = model_shape(spec.model.path, spec.model.trust_remote_code)

    # 2. Launch exactly like a normal run; note when the first metrics record shows up.
    launched = time.time()
    try:
        run = runner.start(spec, workspace)
    except runner.RunnerBusy as err:
        print(f"error: {err}", file=sys.stderr)
        return 3
    print(f"launched {run.path}; waiting for the run to end...", file=sys.stderr)
    first_seen = None
    # Other work on the machine skews every figure; the load average shows whether there was any.
    loads = []

    def tick(status):
        nonlocal first_seen
        if first_seen is None and run.read_metrics()[0]:
            first_seen = time.time()
        loads.append(os.getloadavg()[0])

    status = runner.wait(run, on_tick=tick, poll_s=0.2, stop_on_interrupt=True)
    wall_s = (status.get("ended_at") or time.time()) - launched
    if status["state"] != "completed":
        print(runner.failure_report(run, status), file=sys.stderr)
        print(run.path)
        return 1

    # 3. Figures, all from metrics.jsonl.
    records, _ = run.read_metrics()
    steady = steady_state(records)
    if steady is None:
        print("error: fewer than two metrics records; lower train.logging_steps so the steady state can be measured",
              file=sys.stderr)
        print(run.path)
        return 1
    peak_gflops = peaks[precision][0]
    tps, sps = steady["tokens_per_s"], steady["samples_per_s"]
    mean_len = steady["tokens"] / max(steady["samples"], 1)
    n, layers, hidden = shape["params"], shape["layers"], shape["hidden"]
    # FLOPs per non-padding token. 6N = forward 2N + backward 4N (input and weight
    # gradients): the usual full fine-tuning count. LoRA's frozen base needs no weight
    # gradients, so 4N is the work really done. The attention term (scores and weighted
    # sum, forward + backward, full s x s as in the PaLM paper) has no weights, so LoRA
    # pays all of it. The adapters' own matmuls are left out of every line.
    formulas = {"6N": 6 * n, "4N": 4 * n}
    if layers and hidden:
        formulas["4N + 12*L*d*s"] = 4 * n + 12 * layers * hidden * mean_len
    mfu = {name: tps * flops / (peak_gflops * 1e9) for name, flops in formulas.items()}
    memory_label = "peak allocated GPU memory" if device == "cuda" else "peak RSS of the trainer"
    first_step_s = first_seen - launched if first_seen else None
    figures = {
        "run": str(run.path),
        "device": device,
        "precision": precision,
        "threads": threads,
        "cpu_count": os.cpu_count(),
        "load_before": round(load_before, 2),
        "load_during_mean": round(sum(loads) / max(len(loads), 1), 2),
        "matmul_peak_gflops": {name: round(g, 1) for name, (g, _) in peaks.items()},
        "base_params": n,
        "layers": layers,
        "hidden": hidden,
        "launch_to_first_step_s": round(first_step_s, 2) if first_step_s else None,
        "wall_s": round(wall_s, 2),
        "steady_state": {k: (round(v, 3) if isinstance(v, float) else v) for k, v in steady.items()},
        "tokens_per_s_non_padding": round(tps, 2),
        "tokens_per_s_padded_upper_bound": round(sps * spec.data.max_length, 2),
        "samples_per_s": round(sps, 3),
        "mean_tokens_per_sample": round(mean_len, 1),
        "peak_memory_mb": max(r.get("memory_mb", 0) for r in records),
        "memory_kind": memory_label,
        "flops_per_token": {name: round(f) for name, f in formulas.items()},
        "mfu": {name: round(m, 4) for name, m in mfu.items()},
    }
    write_atomic(run.path / "bench.json", json.dumps(figures, indent=1))
    print_table(figures, peaks, spec.data.max_length)
    print(run.path)
    return 0


def print_table(f: dict, peaks: dict, max_length: int) -> None:
    s = f["steady_state"]
    mb = f["peak_memory_mb"]
    rows = [
        (f"matmul peak, {name} (torch.mm 2048x2048, best of {reps})", f"{g:.1f} GFLOP/s")
        for name, (g, reps) in sorted(peaks.items())
    ]
    rows += [
        ("base model parameters N (from config, meta device)", f"{f['base_params'] / 1e6:.1f} M"),
        ("time from launch to first step (first metrics record)",
         f"{f['launch_to_first_step_s']:.1f} s" if f["launch_to_first_step_s"] else "n/a"),
        ("total wall time (launch to end, adapter saved)", f"{f['wall_s']:.1f} s"),
        (f"steady state: steps {s['from_step']}-{s['to_step']} (first logged step excluded)", f"{s['seconds']:.1f} s"),
        ("tokens/s, non-padding (as the trainer counts them)", f"{f['tokens_per_s_non_padding']:.1f}"),
        (f"tokens/s, padded, UPPER BOUND (samples/s x max_length {max_length})",
         f"{f['tokens_per_s_padded_upper_bound']:.1f}"),
        ("samples/s", f"{f['samples_per_s']:.3f}"),
        ("mean non-padding tokens per sample (s)", f"{f['mean_tokens_per_sample']:.1f}"),
        (f"peak memory ({f['memory_kind']})", f"{mb:.0f} MiB ({mb * 2**20 / 1e9:.2f} GB)"),
    ]
    peak_name = f["precision"]
    for name, m in f["mfu"].items():
        rows.append((f"MFU, {name} FLOPs/token vs {peak_name} peak", f"{m * 100:.1f} %"))
    width = max(len(label) for label, _ in rows)
    print(f"\nbenchmark: device {f['device']}, precision {f['precision']}, {f['threads']} torch threads")
    print(f"  1-min load average: {f['load_before']} before, {f['load_during_mean']} mean during the run "
          f"({f['cpu_count']} CPUs; the trainer alone accounts for about {f['threads']})")
    for label, value in rows:
        print(f"  {label:<{width}}  {value:>16}")
    print("  6N: standard count (forward 2N + backward 4N, weight gradients included)")
    print("  4N: LoRA's real work on the frozen base (no weight gradients); adapters' own matmuls not counted")
    print("  12*L*d*s: attention scores and weighted sum, forward + backward, L layers, width d, s tokens")
