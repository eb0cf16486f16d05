"""Load a base model and its tokenizer for a job, with the method's loading options."""
from __future__ import annotations

from core.data.encode import ensure_chat_template
from core.models.source import resolve_model


def load_tokenizer(model_path: str):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(resolve_model(model_path, convert=True))
    ensure_chat_template(tokenizer)
    return tokenizer


def load_base_model(spec, device: str, **method_kwargs):
    """Base weights load in fp32 on every device; the Trainer's autocast does bf16/fp16 compute where
    the job asks for it. (Loading a GPU base in its compute dtype would halve its memory: a later change.)"""
    import torch
    from transformers import AutoModelForCausalLM

    kwargs = {"dtype": torch.float32}
    if device == "cuda":
        kwargs["device_map"] = {"": 0}
    kwargs.update(method_kwargs)
    return AutoModelForCausalLM.from_pretrained(resolve_model(spec.model.path, convert=True), **kwargs)
