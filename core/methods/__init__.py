"""The method registry: one module per fine-tuning method, each with the same entry points.

A method module defines:
  NAME        its picker name
  SECTIONS    {spec section: parameter dataclass} it reads, in form order; methods may share a
              section (DoRA reads LoRA's), and the UI shows only the picked method's sections
  EXPLAINER   one paragraph for the UI: what it changes, what it costs
  peft_config(spec, model, plan) -> the PEFT config to train
and may override any hook in core/methods/defaults.py (quantised loading, model patches, custom
optimisers, callbacks). Adding a method means adding its module and one line here.
"""
from __future__ import annotations

from dataclasses import dataclass

from core.methods import adalora, defaults, dora, longlora, lora, qdora, qlora, vera

METHODS = {module.NAME: module for module in (lora, dora, qlora, qdora, adalora, longlora, vera)}


@dataclass
class TrainPlan:
    """Facts about the run that a method may need when building its config."""

    total_steps: int
    device: str = "cpu"
    precision: str = "fp32"


def hook(method: str, name: str):
    """The method's own `name` hook, or the default one."""
    return getattr(METHODS[method], name, None) or getattr(defaults, name)
