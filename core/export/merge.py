"""Merge an adapter into its base and check that the saved folder computes what base+adapter computes."""
from __future__ import annotations

from pathlib import Path

from core.chat.prompt import encode_prompt

# Prompts the check runs on: a few ordinary chat turns, rendered with the model's template.
SAMPLE_PROMPTS = ("Who are you?", "What can you do for me?", "Write one sentence about the sea.")

# Allowed max |logit difference|, relative to the largest logit: float32 keeps the merge exact up to
# summation order; saving in 16 bits rounds every weight, which moves logits by about that much more.
RELATIVE_TOLERANCE = {"float32": 1e-4, "float16": 1e-2, "bfloat16": 5e-2}


def sample_inputs(tokenizer) -> list:
    return [encode_prompt(tokenizer, [{"role": "user", "content": p}]) for p in SAMPLE_PROMPTS]


def logits_of(model, inputs: list):
    import torch

    with torch.inference_mode():
        return [model(**batch).logits.float() for batch in inputs]


def max_difference(a: list, b: list) -> float:
    return max(float((x - y).abs().max()) for x, y in zip(a, b))


def tolerance_for(reference: list, dtype: str, override: float | None) -> float:
    if override is not None:
        return override
    scale = max(1.0, max(float(t.abs().max()) for t in reference))
    return RELATIVE_TOLERANCE[dtype] * scale


def merge_and_save(peft_model, tokenizer, folder: Path, dtype: str, shard_size: int | str):
    """Merge in place, write weights + tokenizer + chat template + generation config to `folder`;
    returns the merged model (still float32 in memory)."""
    import torch

    from core.chat.prompt import end_token_ids

    merged = peft_model.merge_and_unload()
    config = merged.generation_config
    config.eos_token_id = end_token_ids(tokenizer, config)  # answers stop at the template's turn end
    config.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else config.eos_token_id[0]
    merged.config.dtype = getattr(torch, dtype)
    state = {k: v.to(getattr(torch, dtype)) for k, v in merged.state_dict().items()}
    merged.save_pretrained(folder, state_dict=state, max_shard_size=shard_size)
    tokenizer.save_pretrained(folder)  # writes chat_template.jinja beside tokenizer.json
    return merged


def load_saved(folder: Path, trust_remote_code: bool = False):
    """The exported folder loaded the way a user would: plain from_pretrained, here in float32. Code from the
    folder runs only when the run's job allowed its base model's code (`trust_remote_code`)."""
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32, trust_remote_code=trust_remote_code).eval()
