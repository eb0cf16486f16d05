"""DoRA: LoRA with the weight split into magnitude and direction (Liu et al., 2024)."""
from __future__ import annotations

from core.methods import lora

NAME = "dora"
SECTIONS = lora.SECTIONS  # same rank/alpha/dropout/targets as LoRA; only the update rule differs
EXPLAINER = (
    "DoRA splits each adapted weight into a magnitude vector and a direction, trains the magnitude directly "
    "and the direction through a LoRA update. It tends to match full fine-tuning more closely than LoRA at the "
    "same rank, for a few more trainable parameters (one vector per layer) and slower steps, because every "
    "forward pass renormalises the adapted weights."
)

# LoRA's options (rsLoRA, LoRA+) apply through LoRA's own hooks; the two it cannot take are refused by name.
after_wrap = lora.after_wrap
optimizer = lora.optimizer
callbacks = lora.callbacks
save_adapter = lora.save_adapter


def check(spec) -> list[tuple[str, str]]:
    return lora.check(spec) + lora.dora_problems(spec)


def peft_config(spec, model, plan=None):
    config = lora.peft_config(spec, model, plan)
    config.use_dora = True
    return config
