"""`python app.py bench JOB --against llamafactory [--repeat N]`: ours and a peer tool, side by side.

Both train the same job on the same data (core/perf/peer.py writes it; both render it to the same
tokens), back to back, `repeats` times, the order alternating so neither always runs on a machine
the other just warmed or loaded. Each run is measured the same way (core/perf/measure.py): samples/s
and non-padding tokens/s from the end of the first step to the end of the last, peak RSS of the whole
process tree. The ratios ours/peer are taken per pair and as the median over pairs; the load average
during each run is printed beside it, since other work on the machine skews every figure.
"""
from __future__ import annotations

import os
import statistics
import sys
import tempfile
from pathlib import Path

from core.perf import peer
from core.perf.bench import BenchError, figures_for, launch_watched, measure_peaks, model_shape, print_table
from core.runs import runner
from core.runtime.device import cpu_has_native_bf16, pick_device, pick_precision

PEERS = {"llamafactory": peer}


def ours_job(spec, registry: Path):
    """The job pointed at the shared data, in the precision both tools run."""
    from core.spec import spec_from_dict
    from core.spec.parse import merge

    data = spec.to_dict()
    return spec_from_dict(merge(data, {"data": {"registry": str(registry), "dataset": peer.DATASET,
                                                "max_samples": 0, "eval_split": 0.0}}))


def ours_figures(figures: dict, status: dict, records: list[dict], samples_per_step: int, launched: float) -> dict:
    """Our run's figures in the peer's terms (core/perf/peer.summarize), from its run folder."""
    started = status.get("train_started_at")
    points = [{"step": r["step"], "t": (started or launched) + r["elapsed_s"], "tokens": r["tokens_seen"]}
              for r in records if "tokens_seen" in r]
    kernel = max((r.get("memory_mb", 0) for r in records), default=0) * 2**20
    out = peer.summarize("ours", points, samples_per_step, launched, status.get("ended_at") or launched,
                         int(figures["tree_peak_mb"] * 2**20), int(kernel), figures["load_during_mean"],
                         figures["run"])
    if figures.get("launch_to_first_step_s") is not None:
        out["launch_to_first_step_s"] = figures["launch_to_first_step_s"]
    return out


def run_side_by_side(spec, workspace: Path, against: str, repeats: int) -> int:
    if against not in PEERS:
        print(f"error: unknown peer {against!r}; known: {', '.join(PEERS)}", file=sys.stderr)
        return 2
    from core.models.source import resolve_model

    device = pick_device(spec.runtime.device)
    precision = pick_precision(spec.runtime.precision, device)
    import torch

    threads = torch.get_num_threads()
    try:
        peer.ensure_venv(lambda m: print(m, file=sys.stderr))
        workspace.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix="side-by-side-", dir=workspace))
        registry = peer.write_data(work / "data")
        job = ours_job(spec, registry)
        peer.peer_config(job, Path("."), work / "data", work, precision)  # refuse an unmappable job before any run
    except (peer.PeerError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    model_dir = Path(resolve_model(job.model.path, convert=True))
    peaks = measure_peaks(device, precision, threads)
    shape = model_shape(job.model.path)
    per_step = job.train.batch_size * job.train.grad_accum
    pairs, last_ours = [], None
    for i in range(repeats):
        pair = {}
        for tool in (("peer", "ours") if i % 2 == 0 else ("ours", "peer")):
            print(f"repeat {i + 1}/{repeats}: {tool}...", file=sys.stderr)
            try:
                if tool == "peer":
                    pair["peer"] = peer.run_peer(job, model_dir, work / "data", work / f"peer-{i + 1}", precision)
                else:
                    load_before = os.getloadavg()[0]
                    watched = launch_watched(job, workspace)
                    figures = figures_for(job, watched, peaks, shape, device, precision, threads, load_before)
                    records, _ = watched["run"].read_metrics()
                    pair["ours"] = ours_figures(figures, watched["status"], records, per_step, watched["launched"])
                    last_ours = figures
            except runner.RunnerBusy as err:
                print(f"error: {err}", file=sys.stderr)
                return 3
            except (BenchError, peer.PeerError) as err:
                print(f"error: {err}", file=sys.stderr)
                return 1
        pairs.append(pair)
    print_table(last_ours, peaks, job.data.max_length)
    print_side_by_side(pairs, job, precision, device, threads, work)
    return 0


RATIO_ROWS = [
    ("samples/s", "samples_per_s", "{:.3f}"),
    ("non-padding tokens/s", "tokens_per_s", "{:.1f}"),
    ("peak RSS, MiB (max of tree poll and kernel peak)", "peak_rss_mb", "{:.0f}"),
]
OTHER_ROWS = [
    ("  peak RSS of the process tree, polled, MiB", "tree_peak_mb", "{:.0f}"),
    ("  kernel peak RSS of the main process, MiB", "kernel_peak_mb", "{:.0f}"),
    ("time per step, s", "step_s", "{:.3f}"),
    ("launch to end of first step, s", "launch_to_first_step_s", "{:.1f}"),
    ("non-padding tokens over the run", "tokens_total", "{:,}"),
    ("1-min load average during the run", "load_mean", "{}"),
]


def _cpu_flags() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            flags = next(line for line in fh if line.startswith("flags")).split()
    except (OSError, StopIteration):
        return "unknown"
    wanted = ["avx2", "avx512f", "avx512_bf16", "amx_bf16"]
    return " ".join(f if f in flags else f"no-{f}" for f in wanted)


def print_side_by_side(pairs: list[dict], job, precision: str, device: str, threads: int, work: Path) -> None:
    peer_name = pairs[0]["peer"]["tool"]
    t = job.train
    print(f"\nside by side: ours vs {peer_name}, {len(pairs)} pair(s) run back to back, order alternating")
    print(f"  job: {job.method} r{job.lora.r} alpha {job.lora.alpha:g} on {', '.join(job.lora.targets)}, dropout "
          f"{job.lora.dropout:g}, batch {t.batch_size} x accumulation {t.grad_accum}, max length {job.data.max_length}, "
          f"{t.max_steps} steps, {precision} on {device} ({threads} torch threads, {os.cpu_count()} CPUs; "
          f"CPU flags: {_cpu_flags()}; native bf16: {cpu_has_native_bf16()})")
    print(f"  data: {work / 'data'} (48 identity samples, template {peer.TEMPLATE}; the same tokens in both)")
    print(f"  ours: lean loss {job.runtime.lean_loss}, shared prefix {job.runtime.shared_prefix}, "
          f"fused LoRA layers {job.runtime.fused_lora}, "
          f"group by length {t.group_by_length}, gradient checkpointing {t.gradient_checkpointing}")
    width = max(len(label) for label, _, _ in RATIO_ROWS + OTHER_ROWS) + 2
    for i, pair in enumerate(pairs, 1):
        print(f"\n  pair {i}{'':<{width - 7}}{'ours':>12}{'peer':>12}{'ours/peer':>12}")
        for label, key, fmt in RATIO_ROWS:
            a, b = pair["ours"][key], pair["peer"][key]
            print(f"  {label:<{width}}{fmt.format(a):>12}{fmt.format(b):>12}{a / b:>12.2f}")
        for label, key, fmt in OTHER_ROWS:
            a, b = pair["ours"].get(key), pair["peer"].get(key)
            show = [fmt.format(v) if v is not None else "n/a" for v in (a, b)]
            print(f"  {label:<{width}}{show[0]:>12}{show[1]:>12}")
    print(f"\n  median over {len(pairs)} pair(s){'':<{width - 17}}{'ours':>12}{'peer':>12}{'ours/peer':>12}")
    for label, key, fmt in RATIO_ROWS:
        a = statistics.median(p["ours"][key] for p in pairs)
        b = statistics.median(p["peer"][key] for p in pairs)
        ratio = statistics.median(p["ours"][key] / p["peer"][key] for p in pairs)
        print(f"  {label:<{width}}{fmt.format(a):>12}{fmt.format(b):>12}{ratio:>12.2f}")
    print("  (ratio: median of the per-pair ratios; rates from the end of step 1 to the end of the last step)")
    print(f"  runs: ours in {', '.join(p['ours']['where'] for p in pairs)}; peer in "
          f"{', '.join(p['peer']['where'] for p in pairs)}")
