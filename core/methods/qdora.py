"""QDoRA: DoRA's magnitude/direction update over a 4- or 8-bit base model (QLoRA's loading)."""
from __future__ import annotations

from core.methods import lora, qlora

NAME = "qdora"
SECTIONS = qlora.SECTIONS  # LoRA's rank/alpha/dropout/targets plus the quantisation settings
EXPLAINER = (
    "QDoRA is DoRA on a quantised base: the frozen linear layers are stored in 4 or 8 bits as in QLoRA, and "
    "each adapted layer learns a magnitude vector and a LoRA update of its direction. It keeps QLoRA's "
    "memory savings and often closes more of the gap to full fine-tuning, but each step is slower still: "
    "to renormalise the direction, every adapted weight is dequantised once more per forward pass."
)

# Loading, k-bit preparation, the adapter dtype fix, LoRA's options and the paged optimiser are QLoRA's.
callbacks = qlora.callbacks


def check(spec) -> list[tuple[str, str]]:
    return qlora.check(spec) + lora.dora_problems(spec)

load_kwargs = qlora.load_kwargs
prepare_model = qlora.prepare_model
after_wrap = qlora.after_wrap
optimizer = qlora.optimizer


def peft_config(spec, model, plan=None):
    config = qlora.peft_config(spec, model, plan)
    config.use_dora = True
    return config
