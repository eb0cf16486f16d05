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

    from core.runtime.distributed import local_rank
    from core.runtime.layout import sharded

    kwargs = {"dtype": torch.float32}
    if device == "cuda" and not sharded(spec):
        # The whole model on this process's GPU: its local rank among the node's processes (0 for one process).
        # FSDP and ZeRO-3 place the weights themselves.
        kwargs["device_map"] = {"": local_rank()}
    kwargs.update(method_kwargs)
    return AutoModelForCausalLM.from_pretrained(resolve_model(spec.model.path, convert=True), **kwargs)
