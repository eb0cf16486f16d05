"""Which devices a job claims, and which jobs may therefore run side by side.

The one rule: a job claims either a set of GPU ids (it named them) or the whole machine (None: auto,
cpu, cuda, or anything that is not an explicit list of GPUs). Two jobs may run at the same time only
when both claim explicit GPU sets and the sets do not meet. On a CPU-only machine every job claims the
machine, so jobs run one after another.

The scheduler reads claims from queued job files without parsing the whole spec (that would import
torch into a process that only waits), so the rule takes the raw `runtime.device` value.
"""
from __future__ import annotations

from pathlib import Path

import yaml

Claim = frozenset[int] | None  # GPU ids, or None for the whole machine


def device_claim(device) -> Claim:
    """The GPUs a `runtime.device` value claims: a list of ids ([0, 1], "0,1", "cuda:0,1") or None."""
    if isinstance(device, (list, tuple)):
        items = list(device)
    elif isinstance(device, int) and not isinstance(device, bool):
        items = [device]
    elif isinstance(device, str):
        text = device.strip().lower().removeprefix("cuda:")
        items = [part.strip() for part in text.split(",")] if text else []
    else:
        return None
    ids = []
    for item in items:
        try:
            ids.append(int(str(item).strip().lower().removeprefix("cuda:")))
        except ValueError:
            return None  # "auto", "cpu", "cuda": the machine
    return frozenset(ids) if ids else None


def spec_claim(spec) -> Claim:
    return device_claim(spec.runtime.device)


def job_file_claim(path: Path) -> Claim:
    """The claim of a job file (job.yaml or a queue entry) read as plain YAML; unreadable means the machine."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return None
    runtime = data.get("runtime") if isinstance(data, dict) else None
    return device_claim(runtime.get("device")) if isinstance(runtime, dict) else None


def claims_overlap(a: Claim, b: Claim) -> bool:
    """True when two jobs with these claims may not run at the same time."""
    return a is None or b is None or bool(a & b)
