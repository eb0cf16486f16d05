"""Load a finished run for inference: its base model, unquantised, with its adapter on top.

Chat and export both start here. The base always loads in a floating-point dtype, even for a
run trained on a 4-bit base (QLoRA): an adapter merges into real weights only, and chatting
with the 16/32-bit base shows what the merged export will do.
"""
from __future__ import annotations

from pathlib import Path

from core.runs.folder import RunFolder


class RunNotReady(ValueError):
    """The run cannot be used for chat or export; the message says why."""


USABLE_STATES = ("completed", "stopped")  # a stopped run saved its adapter too
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")


def unusable_reason(run: RunFolder) -> str | None:
    """Why a run cannot be chatted with or exported, or None when it can."""
    if not run.job.is_file():
        return f"no run at {run.path} (it has no job.yaml)"
    state = run.status()["state"]
    if state not in USABLE_STATES:
        return f"run {run.run_id} is {state}; only a completed or stopped run has an adapter to use"
    if not (run.adapter_dir / "adapter_config.json").is_file():
        return f"run {run.run_id} is {state} but has no adapter/ folder"
    if not any((run.adapter_dir / name).is_file() for name in ADAPTER_WEIGHTS):
        return f"run {run.run_id} is {state} but its adapter/ folder holds no weights"
    return None


def check_run(path) -> RunFolder:
    """The run folder at `path`, or RunNotReady naming what is wrong with it."""
    run = RunFolder(Path(path).expanduser().resolve())
    reason = unusable_reason(run)
    if reason:
        raise RunNotReady(reason)
    return run


def base_dtype(device: str):
    import torch

    return torch.float32 if device == "cpu" else torch.bfloat16


def load_run_model(run: RunFolder, device: str = "cpu", dtype=None):
    """(PeftModel in eval mode, tokenizer, spec) for a checked run."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from core.methods import METHODS
    from core.models.remote_code import refuse_custom_code
    from core.models.source import resolve_model
    from core.spec import load_spec

    spec = load_spec(str(run.job))  # parsed only: the run's dataset, device and hub need not be there now
    trust = spec.model.trust_remote_code  # the run's own choice, the same as when it trained
    source = resolve_model(spec.model.path, convert=True)
    refuse_custom_code(source, trust)
    kwargs = {"dtype": dtype or base_dtype(device), "trust_remote_code": trust, **METHODS[spec.method].inference_kwargs(spec)}
    base = AutoModelForCausalLM.from_pretrained(source, **kwargs).to(device)
    model = PeftModel.from_pretrained(base, str(run.adapter_dir)).eval()
    # The trainer saved the tokenizer it trained with (chat template included) beside the adapter.
    tokenizer = AutoTokenizer.from_pretrained(str(run.adapter_dir), trust_remote_code=trust)
    return model, tokenizer, spec


def load_base_only(model_path: str, device: str = "cpu"):
    """(base model, tokenizer) for chatting with a base model that has no run; no job allows its folder's code."""
    from transformers import AutoModelForCausalLM

    from core.models.loading import load_tokenizer
    from core.models.remote_code import refuse_custom_code
    from core.models.source import resolve_model

    source = resolve_model(model_path, convert=True)
    refuse_custom_code(source, False)
    model = AutoModelForCausalLM.from_pretrained(source, dtype=base_dtype(device), trust_remote_code=False)
    return model.to(device).eval(), load_tokenizer(model_path)
