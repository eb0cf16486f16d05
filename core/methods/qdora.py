"""QDoRA: DoRA's magnitude/direction update over a 4- or 8-bit base model.

It extends QLoRA (loading, k-bit preparation, the adapter dtype fix, LoRA's options, the paged
optimiser) and adds to it what DoRA adds to LoRA.
"""
from __future__ import annotations

from core.methods.dora import dora_hooks

NAME = "qdora"
EXTENDS = "qlora"
EXPLAINER = (
    "QDoRA is DoRA on a quantised base: the frozen linear layers are stored in 4 or 8 bits as in QLoRA, and "
    "each adapted layer learns a magnitude vector and a LoRA update of its direction. It keeps QLoRA's "
    "memory savings and often closes more of the gap to full fine-tuning, but each step is slower still: "
    "to renormalise the direction, every adapted weight is dequantised once more per forward pass."
)

check, peft_config = dora_hooks(NAME)
