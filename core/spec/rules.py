"""Rules between a job's fields and the device the job runs on.

They are launch checks, not parsing rules: the device is known only once `auto` is resolved on this
machine, and a finished run's job.yaml must stay readable wherever it is opened."""
from __future__ import annotations

FP16_ON_CPU = ("fp16 on a CPU is not supported well: PyTorch emulates it there, a run took about 3x as long as "
               "fp32, and fp16's narrow range can overflow the loss; use fp32, or bf16 on a CPU with native bf16 "
               "(AVX512-BF16 or AMX)")


def precision_problem(precision: str, device: str) -> str | None:
    """Why `precision` does not suit `device` ("cpu" or "cuda"), or None."""
    if precision == "fp16" and device == "cpu":
        return FP16_ON_CPU
    return None
