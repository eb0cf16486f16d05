"""What the trainer turns on for speed and memory, decided once before the model loads.

  gradient checkpointing  the job's on/off; auto turns it on only when the estimate without it
                          exceeds 90% of the device's free memory (it costs about 40% more time)
  lean loss               runtime.lean_loss (core/training/head_loss.py)
  shared prefix           runtime.shared_prefix (core/training/shared_prefix.py); off with checkpointing
  fused LoRA layers       runtime.fused_lora (core/training/fused_lora.py); off under FSDP and ZeRO-3
Methods whose own forward adds to the loss (AdaLoRA's orthogonality term) keep TRL's loss step.

Left as they are:
  torch.compile   not turned on: inductor compiles C++ kernels at the first step, which on a 2-core CPU alone
                  exceeds the 10 s launch-to-first-step budget, and row lengths change every batch. Tried on
                  the bundled bench job (each decoder layer compiled, dynamic shapes, 2-core AVX2): first step
                  80 s instead of 8, later steps within 10% of eager (each layer index recompiles until
                  dynamo's cache limit, and the shared prefix's cache breaks the graph).
  Liger kernels   fused Triton kernels for CUDA, not installed; on GPUs TRL 1.16 already fuses the output
                  layer, and the lean loss covers the same ground on every device.
  threads         torch's default, one per core, as the peer tool runs; not tuned.
  fused RMSNorm   tried: the norm's forward and backward by hand as one autograd step (a 640 x 576 activation:
                  4.4-5.2 ms -> 1.3-1.4 ms), but the bench job's steps were only 2-5% shorter (alternated,
                  10 steps, 2-core AVX2), within the machine's noise: not worth another option.
The estimate made here is the run's prediction, written to status.json and checked when the run ends.
"""
from __future__ import annotations

from dataclasses import dataclass, field

FREE_SHARE = 0.9  # auto checkpointing: leave this share of free memory as the most a run may plan for
KEEPS_OWN_LOSS = ("adalora",)


@dataclass
class Levers:
    checkpointing: bool
    lean_loss: bool
    shared_prefix: bool
    fused_lora: bool = False
    free_bytes: int | None = None
    prediction: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def free_memory(device: str) -> int | None:
    """Bytes the run may still take: free GPU memory, or the CPU's available memory."""
    try:
        if device == "cuda":
            import torch

            return int(torch.cuda.mem_get_info()[0])
        import psutil

        return int(psutil.virtual_memory().available)
    except Exception:  # no way to tell: auto keeps checkpointing off
        return None


def data_shape(dataset, batch: int) -> dict:
    """Longest row, mean row and trained share of the encoded rows: what the prediction is made for."""
    rows = list(dataset["input_ids"])  # a dataset column decodes its rows on each pass: read them once
    lengths = [len(ids) for ids in rows]
    labels = dataset["labels"] if "labels" in dataset.column_names else None
    trained = sum(sum(1 for x in row if x != -100) for row in labels) if labels is not None else sum(lengths)
    longest = max(lengths) if lengths else 1
    # tokens every row starts with (a template's system prompt), computed once per batch by the shared prefix
    common = 0
    while rows and common < min(lengths) and all(r[common] == rows[0][common] for r in rows):
        common += 1
    return {"longest": longest, "mean": sum(lengths) / max(len(lengths), 1), "common": common,
            "label_share": trained / max(sum(lengths), 1), "batch": batch}


def choose(spec, device: str, precision: str, dataset) -> Levers:
    """Resolve the job's speed and memory settings and make the run's prediction."""
    from core.perf.estimate import estimate_job, job_inputs
    from core.perf.peak import matmul_peak
    from core.runtime.layout import sharded

    t, rt = spec.train, spec.runtime
    shape = data_shape(dataset, t.batch_size)
    free = free_memory(device)
    common = dict(device=device, precision=precision, seq_len=shape["longest"], label_share=shape["label_share"],
                  inputs=job_inputs(spec))  # the meta-device model is built once for both estimates
    notes = []
    if t.gradient_checkpointing == "auto":
        without = estimate_job(spec, checkpointing=False, **common)
        checkpointing = free is not None and without.total > FREE_SHARE * free
        notes.append(f"gradient checkpointing {'on' if checkpointing else 'off'} (auto: estimate without it "
                     f"{without.total / 2**20:,.0f} MiB, free {free / 2**20 if free else float('nan'):,.0f} MiB)")
    else:
        checkpointing = t.gradient_checkpointing == "on"
    spec.train.gradient_checkpointing = "on" if checkpointing else "off"  # the methods' hooks read the decision
    lean = rt.lean_loss and spec.method not in KEEPS_OWN_LOSS
    shared = rt.shared_prefix and lean and not checkpointing and spec.data.batching == "padded"
    peak = matmul_peak(device, precision)
    prefix = shape["common"] if shared and t.batch_size > 1 else 0
    work = round(prefix + t.batch_size * (shape["mean"] - prefix))  # what an average step computes
    est = estimate_job(spec, checkpointing=checkpointing, peak_gflops=peak, flop_tokens=work, **common)
    prediction = {
        "peak_mb": round(est.total / 2**20, 1),
        "parts_mb": {k: round(v / 2**20, 1) for k, v in est.parts.items()},
        "step_s": round(est.step_s, 3) if est.step_s else None,
        "for": f"batch {t.batch_size} x {shape['longest']} tokens (longest row), checkpointing "
               f"{'on' if checkpointing else 'off'}",
    }
    if free is not None and est.total > free:
        notes.append(f"WARNING: estimated peak {est.total / 2**20:,.0f} MiB exceeds the free memory "
                     f"{free / 2**20:,.0f} MiB; the run may fail with out-of-memory")
    fused = rt.fused_lora and not sharded(spec)  # sharded weights are gathered by hooks the fused step would skip
    notes.append(f"lean loss {'on' if lean else 'off'}, shared prefix {'on' if shared else 'off'}, "
                 f"fused LoRA layers {'on' if fused else 'off'}")
    return Levers(checkpointing=checkpointing, lean_loss=lean, shared_prefix=shared, fused_lora=fused, free_bytes=free,
                  prediction=prediction, notes=notes)
