"""Settings for the trainer process itself, applied before torch, TRL and PEFT are imported.

  bitsandbytes  PEFT imports it whenever it is installed, and it pulls in torch's compiler stack; a job
                without a quantised base never uses it. Left out of those jobs' processes: measured on the
                bundled model's peer job, 90 MiB less peak RSS and a shorter start. `app.py train` and the
                other one-job commands leave it out too (their launch checks count parameters with PEFT):
                17.0 s -> 10.9 s of CPU for the quickstart's checks (timed under cProfile, 2-core AVX2 EPYC).
  allocator     on Linux CPUs, tensors up to 2 MiB come from glibc's heap and larger ones get their own mapping,
                returned to the system when freed. Fixed, so a forked trainer behaves the same whatever its
                warm host did before. Each fresh mapping is paid for in page faults when first written, about
                2 us a 4 KiB page in this project's VMs: the earlier 256 KiB threshold (every activation its
                own mapping) made an element-wise multiply of a batch 8 x 29 x 1536 activation 12x slower
                (0.71 vs 0.06 ms) and the peer job's steps half again as long. The heap keeps what it frees,
                so a higher threshold grows the peak with fragmentation: at 32 MiB (glibc's own ceiling) the
                bundled model's estimate test (tests/e2e/test_estimate_e2e.py) measured QLoRA at batch 8 with
                checkpointing at 2499 MiB against 1374 predicted, DoRA 2174 vs 1319; at 2 MiB 1514 and 1420,
                every case within 13% of the estimate. Peer job (2-core AMD EPYC, avx2 fma, no avx512; fp32;
                10-12 steps, mean from the second, alternated in one sitting): 256 KiB 3.05 s a step at 1651
                MiB peak RSS; 2 MiB 1.98 s at 1729 MiB; 4 MiB 2.08-2.38 s at 1735-1741 MiB; 32 MiB
                2.11-2.30 s at 1762-1794 MiB; glibc's default 1.95-2.21 s at 1764-1782 MiB. The peer tool
                peaks at 1884 MiB on that job.
"""
from __future__ import annotations

import sys

QUANTISED = ("qlora", "qdora")
MMAP_THRESHOLD = 2 * 2**20  # activations of small batches from the heap; see the docstring
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # mallopt parameter numbers from glibc's malloc.h


def leave_out_bitsandbytes(model_path: str, method: str | None = None) -> bool:
    """For a process that serves this one job or run only (a trainer, `app.py train`, a chat worker): when
    the method (None: the bare model) quantises nothing, the model is not a quantised checkpoint and
    bitsandbytes is not loaded yet, make `import bitsandbytes` fail fast (PEFT then treats it as absent).
    True when it is left out (now, or already by the warm host this process was forked from)."""
    if "bitsandbytes" in sys.modules:
        return sys.modules["bitsandbytes"] is None
    if needs_bitsandbytes(model_path, method):
        return False
    sys.modules["bitsandbytes"] = None
    return True


def needs_bitsandbytes(model_path: str, method: str | None) -> bool:
    """The job quantises its base, or its model may be a quantised checkpoint."""
    return method in QUANTISED or _may_be_quantised(model_path)


def _may_be_quantised(model_path: str) -> bool:
    """False only when the model's config.json is readable here and has no quantization_config (a
    checkpoint saved quantised loads through its library whatever the method)."""
    import json
    from pathlib import Path

    from core.models.source import resolve_model

    try:
        config = json.loads((Path(resolve_model(model_path)) / "config.json").read_text(encoding="utf-8"))
    except Exception:  # a hub id, an unreadable or broken config: keep bitsandbytes; the checks say what is wrong
        return True
    return not isinstance(config, dict) or "quantization_config" in config


def prepare_process(spec) -> list[str]:
    """Apply the settings that fit this job; returns what was done, for train.log."""
    notes = []
    if leave_out_bitsandbytes(spec.model.path, spec.method):
        notes.append("bitsandbytes not loaded (no quantised base)")
    import torch

    on_cpu = spec.runtime.device == "cpu" or (spec.runtime.device == "auto" and not torch.cuda.is_available())
    if on_cpu and sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL("libc.so.6")
            if libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) and libc.mallopt(M_TRIM_THRESHOLD, MMAP_THRESHOLD):
                notes.append(f"tensors up to {MMAP_THRESHOLD // 2**20} MiB from the heap, larger ones mapped")
        except OSError:  # not glibc (musl, another libc): keep its defaults
            pass
    return notes
