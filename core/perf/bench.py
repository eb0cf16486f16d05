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

from core.perf.peak import DTYPES, matmul_gflops, remember
from core.runs import runner
from core.runs.folder import write_atomic
from core.runtime.device import cpu_has_native_bf16, pick_device, pick_precision


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


class BenchError(RuntimeError):
    """A measured run did not give figures; the message says why (and where its folder is)."""


def measure_peaks(device: str, precision: str, threads: int) -> dict:
    """Matmul peak in the dtype the job trains in, plus bf16 where the CPU really has it; cached for estimates."""
    wanted = {"fp32", precision} | ({"bf16"} if device == "cpu" and cpu_has_native_bf16() else set())
    print(f"measuring matmul peak ({', '.join(sorted(wanted))}, 2048x2048, {threads} threads)...", file=sys.stderr)
    peaks = {name: matmul_gflops(DTYPES[name], device) for name in sorted(wanted)}
    for name, (gflops, _) in peaks.items():
        remember(device, name, threads, gflops)  # the estimate's step time reads the best figure seen
    return peaks


def launch_watched(spec, workspace: Path) -> dict:
    """Launch the job exactly like a normal run and watch it to the end: when the first metrics record
    shows up, the load average, and the peak RSS of the trainer's process tree (core/perf/measure.py)."""
    from core.perf.measure import TreeWatch

    launched = time.time()
    try:
        # A new interpreter, as the peer gets: a trainer forked from a warm host shares its pages with its
        # supervisor, which the summed RSS of the tree would count twice.
        run = runner.start(spec, workspace, warm=False)
    except runner.LaunchError as err:  # RunnerBusy goes to the caller, which says so and exits 3
        raise BenchError(f"the trainer could not be launched: {err}") from None
    print(f"launched {run.path}; waiting for the run to end...", file=sys.stderr)
    pid = run.status().get("pid")
    watch = TreeWatch(pid).start() if pid else None
    first_seen = None
    # Other work on the machine skews every figure; the load average shows whether there was any.
    loads = []

    def tick(status):
        nonlocal first_seen
        if first_seen is None and run.read_metrics()[0]:
            first_seen = time.time()
        loads.append(os.getloadavg()[0])

    status = runner.wait(run, on_tick=tick, poll_s=0.1, stop_on_interrupt=True)
    tree_peak = watch.stop() if watch else 0
    if status["state"] != "completed":
        raise BenchError(f"{runner.failure_report(run, status)}\n{run.path}")
    return {"run": run, "status": status, "launched": launched, "first_seen": first_seen, "loads": loads,
            "tree_peak": tree_peak}


def figures_for(spec, watched: dict, peaks: dict, shape: dict, device: str, precision: str, threads: int,
                load_before: float) -> dict:
    """Every figure of one measured run, all from its run folder and the watch."""
    run, status, launched = watched["run"], watched["status"], watched["launched"]
    wall_s = (status.get("ended_at") or time.time()) - launched
    records, _ = run.read_metrics()
    steady = steady_state(records)
    if steady is None:
        raise BenchError("fewer than two metrics records; lower train.logging_steps so the steady state can be "
                         f"measured\n{run.path}")
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
    first_seen = watched["first_seen"]
    first_step_s = first_seen - launched if first_seen else None
    loads = watched["loads"]
    estimate = status.get("estimate") or {}
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
        "tree_peak_mb": round(watched["tree_peak"] / 2**20, 1),
        "memory_kind": memory_label,
        "estimate": estimate,
        "flops_per_token": {name: round(f) for name, f in formulas.items()},
        "mfu": {name: round(m, 4) for name, m in mfu.items()},
    }
    write_atomic(run.path / "bench.json", json.dumps(figures, indent=1))
    return figures


def run_benchmark(spec, workspace: Path, against: str | None = None, repeats: int = 2, grid: bool = False) -> int:
    device = pick_device(spec.runtime.device)
    precision = pick_precision(spec.runtime.precision, device)
    # The same thread count the trainer will use (core/training/trainer.py sets it the same way).
    if spec.runtime.threads:
        torch.set_num_threads(spec.runtime.threads)
    threads = torch.get_num_threads()
    if against:
        from core.perf.compare import run_side_by_side

        return run_side_by_side(spec, workspace, against, repeats)
    if grid:
        from core.perf.grid import run_grid

        return run_grid(spec, workspace)
    load_before = os.getloadavg()[0]
    peaks = measure_peaks(device, precision, threads)
    shape = model_shape(spec.model.path, spec.model.trust_remote_code)
    try:
        watched = launch_watched(spec, workspace)
        figures = figures_for(spec, watched, peaks, shape, device, precision, threads, load_before)
    except runner.RunnerBusy as err:
        print(f"error: {err}", file=sys.stderr)
        return 3
    except BenchError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print_table(figures, peaks, spec.data.max_length)
    print(figures["run"])
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
        ("peak RSS of the trainer's process tree (polled every 50 ms)", f"{f['tree_peak_mb']:.0f} MiB"),
    ]
    predicted, measured = (f.get("estimate") or {}).get("predicted"), (f.get("estimate") or {}).get("measured")
    if predicted and measured:
        rows.append(("peak memory predicted before launch (core/perf/estimate.py)",
                     f"{predicted['peak_mb']:.0f} MiB ({(predicted['peak_mb'] / measured['peak_mb'] - 1) * 100:+.0f}%)"))
        if predicted.get("step_s") and measured.get("step_s"):
            rows.append(("time per step predicted / measured",
                         f"{predicted['step_s']:.2f} / {measured['step_s']:.2f} s"))
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
