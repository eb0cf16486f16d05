"""Load a base model and its tokenizer for a job, with the method's loading options."""
from __future__ import annotations

from core.data.encode import ensure_chat_template
from core.models.source import resolve_model


def preload_model_libraries() -> None:
    """Import torch, transformers and peft now, in the calling thread, before a server starts its handler threads.

    transformers fills its module lazily, and that is not safe from two threads at once: once reading a job
    stopped importing it (the supervisor and the CLI no longer pay for it), the UI's first Data-tab check
    beside a parameter count failed with "cannot import name 'AutoTokenizer' from 'transformers'"."""
    import peft  # noqa: F401
    import torch  # noqa: F401
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, TrainerCallback  # noqa: F401


def load_tokenizer(model_path: str, trust_remote_code: bool = False):
    """The model's tokenizer with a chat template. `trust_remote_code` is the job's model.trust_remote_code:
    passed explicitly, so transformers never asks on the terminal; a folder needing its own code is refused first."""
    from transformers import AutoTokenizer

    from core.models.remote_code import refuse_custom_code

    source = resolve_model(model_path, convert=True)
    refuse_custom_code(source, trust_remote_code)
    tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
    ensure_chat_template(tokenizer)
    return tokenizer


def load_base_model(spec, device: str, **method_kwargs):
    """Base weights load in fp32 on every device; the Trainer's autocast does bf16/fp16 compute where
    the job asks for it. (Loading a GPU base in its compute dtype would halve its memory: a later change.)"""
    import torch
    from transformers import AutoModelForCausalLM

    from core.models.remote_code import refuse_custom_code
    from core.runtime.distributed import local_rank
    from core.runtime.layout import sharded

    trust = spec.model.trust_remote_code
    kwargs = {"dtype": torch.float32, "trust_remote_code": trust}
    if device == "cuda" and not sharded(spec):
        # The whole model on this process's GPU: its local rank among the node's processes (0 for one process).
        # FSDP and ZeRO-3 place the weights themselves.
        kwargs["device_map"] = {"": local_rank()}
    kwargs.update(method_kwargs)
    source = resolve_model(spec.model.path, convert=True)
    refuse_custom_code(source, trust)
    return AutoModelForCausalLM.from_pretrained(source, **kwargs)
