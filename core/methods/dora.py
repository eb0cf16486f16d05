"""DoRA: LoRA with the weight split into magnitude and direction (Liu et al., 2024).

It extends LoRA: the same section and hooks (rsLoRA, LoRA+ apply as they are); only the update rule
differs, and the two LoRA options it cannot take are refused by name. QDoRA adds DoRA to QLoRA the
same way, through `dora_hooks`.
"""
from __future__ import annotations

from core.methods import lora
from core.methods.registry import base

NAME = "dora"
EXTENDS = "lora"
EXPLAINER = (
    "DoRA splits each adapted weight into a magnitude vector and a direction, trains the magnitude directly "
    "and the direction through a LoRA update. It tends to match full fine-tuning more closely than LoRA at the "
    "same rank, for a few more trainable parameters (one vector per layer) and slower steps, because every "
    "forward pass renormalises the adapted weights."
)


def dora_hooks(name: str):
    """(check, peft_config) for method `name`: its base's, plus DoRA's refusals and DoRA's update rule."""

    def check(spec) -> list[tuple[str, str]]:
        return base(name).check(spec) + lora.dora_problems(spec)

    def peft_config(spec, model, plan=None):
        config = base(name).peft_config(spec, model, plan)
        config.use_dora = True
        return config

    return check, peft_config


check, peft_config = dora_hooks(NAME)
