"""`python app.py bench JOB --grid`: how tokens/s and peak memory grow with length and batch.

The job runs at max length 128, 512 and 2048 with packed rows (every row full, so a step holds exactly
batch x length tokens) and batch 1, 8 and 32, three steps each, on a mix of the bundled datasets
trained on every token (long passkey documents plus the instruction sets: enough text to fill 32 rows
of 2048). Rates are taken from the end of step 1 to the end of step 3. Gradient checkpointing is left
to `auto` (on where the estimate does not fit in free memory). A configuration whose estimated time
for its three steps exceeds the budget (150 s) is not run: its line shows the estimate, marked as such.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from core.perf.bench import BenchError, figures_for, launch_watched, measure_peaks, model_shape
from core.runs import runner
from core.runtime.device import pick_device, pick_precision

LENGTHS = (128, 512, 2048)
BATCHES = (1, 8, 32)
STEPS = 3
MIX = "passkey,general_instructions,arithmetic_4digit_train,arithmetic_2digit_train,identity"


def grid_job(spec, length: int, batch: int):
    from core.spec import spec_from_dict
    from core.spec.parse import merge

    return spec_from_dict(merge(spec.to_dict(), {
        "data": {"dataset": MIX, "registry": "", "max_length": length, "batching": "packed", "train_on_prompt": True,
                 "max_samples": 0, "eval_split": 0.0},
        "train": {"batch_size": batch, "grad_accum": 1, "max_steps": STEPS, "logging_steps": 1, "save_steps": 0,
                  "gradient_checkpointing": "auto"},
    }))


def run_grid(spec, workspace: Path, budget_s: float = 150.0) -> int:
    import torch

    from core.perf.estimate import estimate_job, job_inputs
    from core.training.levers import FREE_SHARE, free_memory

    device = pick_device(spec.runtime.device)
    precision = pick_precision(spec.runtime.precision, device)
    threads = torch.get_num_threads()
    from core.perf.peak import matmul_peak

    peaks = measure_peaks(device, precision, threads)
    peak = matmul_peak(device, precision, threads, measure=False) or peaks[precision][0]  # the best seen
    shape = model_shape(spec.model.path)
    inputs = job_inputs(grid_job(spec, LENGTHS[0], BATCHES[0]))
    rows = []
    for length in LENGTHS:
        for batch in BATCHES:
            job = grid_job(spec, length, batch)
            free = free_memory(device)
            without = estimate_job(job, inputs=inputs, device=device, precision=precision, checkpointing=False,
                                   seq_len=length, peak_gflops=peak)
            ckpt = free is not None and without.total > FREE_SHARE * free
            est = estimate_job(job, inputs=inputs, device=device, precision=precision, checkpointing=ckpt,
                               seq_len=length, peak_gflops=peak) if ckpt else without
            row = {"length": length, "batch": batch, "tokens": batch * length, "checkpointing": ckpt,
                   "predicted_mb": est.total / 2**20, "predicted_tps": batch * length / est.step_s}
            if est.step_s * STEPS > budget_s:
                row["note"] = f"not run: estimated {est.step_s * STEPS:,.0f} s for {STEPS} steps > budget {budget_s:.0f} s"
                rows.append(row)
                continue
            print(f"grid: length {length}, batch {batch}...", file=sys.stderr)
            try:
                figures = figures_for(job, launch_watched(job, workspace), peaks, shape, device, precision, threads,
                                      os.getloadavg()[0])
            except runner.RunnerBusy as err:
                print(f"error: {err}", file=sys.stderr)
                return 3
            except BenchError as err:
                row["note"] = f"failed: {str(err).splitlines()[0]}"
                rows.append(row)
                continue
            row.update(tps=figures["tokens_per_s_non_padding"], peak_mb=figures["peak_memory_mb"],
                       tree_mb=figures["tree_peak_mb"], load=figures["load_during_mean"])
            rows.append(row)
    print_grid(rows, precision, device, threads, peak)
    return 0


def print_grid(rows: list[dict], precision: str, device: str, threads: int, peak: float) -> None:
    print(f"\nhow cost grows: packed rows, {STEPS} steps each, {precision} on {device}, {threads} threads, "
          f"matmul peak {peak:.0f} GFLOP/s")
    head = f"  {'length':>6} {'batch':>5} {'tokens/step':>11} {'tokens/s':>9} {'peak MiB':>9} {'predicted MiB':>13} " \
           f"{'ckpt':>4} {'load':>5}  note"
    print(head)
    for r in rows:
        tps = f"{r['tps']:.1f}" if "tps" in r else f"~{r['predicted_tps']:.0f}*"
        peak_mb = f"{r['peak_mb']:.0f}" if "peak_mb" in r else "-"
        load = f"{r['load']:.1f}" if "load" in r else "-"
        print(f"  {r['length']:>6} {r['batch']:>5} {r['tokens']:>11,} {tps:>9} {peak_mb:>9} {r['predicted_mb']:>13,.0f} "
              f"{'on' if r['checkpointing'] else 'off':>4} {load:>5}  {r.get('note', '')}")
    print("  tokens/s: non-padding tokens from the end of step 1 to the end of the last step; peak: kernel peak RSS "
          "(CPU) or peak allocated (GPU); * = estimated from FLOPs and the matmul peak, not run")
