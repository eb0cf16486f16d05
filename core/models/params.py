"""Count a job's trainable and total parameters before launch, without loading any weights.

The model is built from its config.json on PyTorch's meta device, where tensors have a shape
but no storage, and the method's real PEFT config is applied to it. So the numbers are exactly
what training would report, a 70B model costs no memory, and a folder holding only config.json
is enough.
"""
from __future__ import annotations

import warnings


class ParamCountError(ValueError):
    """The parameters cannot be counted (unknown architecture, no target matches); the message says why."""


def count_parameters(spec) -> dict:
    """Parameter counts for a validated spec.

    Returns a dict with
      total      the base model's parameters (tied weights counted once)
      trainable  parameters that will receive gradients
      all        total plus what the method adds (the adapters)
      share      trainable / all, as a fraction; PEFT's print_trainable_parameters reports this in percent
      targets    the module-name suffixes the method wraps (e.g. q_proj, v_proj)
      adapted    how many layers were wrapped
      adapted_shapes  (in, out) features of each wrapped layer
      linear     parameters in the base's linear layers, the output layer excepted
      config     the model's config (for the memory estimate, core/perf/estimate.py)
    """
    import torch
    from peft import get_peft_model
    from peft.tuners.tuners_utils import BaseTunerLayer

    from core.methods import METHODS

    method = METHODS[spec.method]
    config, model = meta_model(spec.model.path, spec.model.trust_remote_code)
    # PEFT warns about deprecated transformers attributes while wrapping; that is noise here.
    with warnings.catch_warnings(), torch.device("meta"):
        warnings.simplefilter("ignore")
        total = _count(model)
        head = model.get_output_embeddings()
        # What 4/8-bit quantisation would store compactly: the decoder's linear layers (the estimate reads it).
        linear = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear) and m is not head)
        try:
            # No plan: only shapes are asked for (AdaLoRA's pruning schedule, sized at launch, changes none).
            peft_config = method.peft_config(spec, model, None)
        except ValueError as err:  # e.g. a target toggle that matches no layer of this architecture
            raise ParamCountError(str(err)) from None
        model = get_peft_model(model, peft_config)
        # What the trainer does next, so parameters a method freezes (LoRA-FA's A) are not counted as trainable.
        method.after_wrap(spec, model)

    trainable = _count(model, trainable_only=True)
    everything = _count(model)
    tuned = [(name, module) for name, module in model.named_modules() if isinstance(module, BaseTunerLayer)]
    adapted = [name for name, _ in tuned]
    # (in, out) features of each wrapped layer's base, for the memory estimate (core/perf/estimate.py).
    shapes = [(getattr(m, "in_features", 0), getattr(m, "out_features", 0)) for _, m in tuned]
    targets = peft_config.target_modules
    if isinstance(targets, str) or targets is None:  # a regex or a PEFT shorthand: name what it matched
        targets = {name.rsplit(".", 1)[-1] for name in adapted}
    return {
        "total": total,
        "trainable": trainable,
        "all": everything,
        "share": trainable / everything if everything else 0.0,
        "targets": sorted(targets),
        "adapted": len(adapted),
        "adapted_shapes": shapes,
        "linear": linear,
        "config": config,
    }


def meta_model(model_path: str, trust_remote_code: bool = False):
    """(config, model) built from the model's config.json on the meta device: shapes, no weights read.
    A model that needs code from its folder is refused unless `trust_remote_code` (never a terminal prompt)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from core.models.remote_code import refusal
    from core.models.source import ModelSourceError, resolve_model

    try:
        # convert=True matters only for the bundled model: its folder is built once from the GGUF file.
        source = resolve_model(model_path, convert=True)
    except ModelSourceError as err:  # parsing does not look for the model; counting needs its config
        raise ParamCountError(f"model.path: {err}") from None
    refused = refusal(source, trust_remote_code)
    if refused:
        raise ParamCountError(f"model.path: {refused}")
    try:
        config = AutoConfig.from_pretrained(source, trust_remote_code=trust_remote_code)
    except (OSError, ValueError, KeyError) as err:
        raise ParamCountError(f"cannot read the model's config.json: {err}") from None
    with warnings.catch_warnings(), torch.device("meta"):
        warnings.simplefilter("ignore")
        try:
            return config, AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)
        except ValueError as err:  # e.g. a config for an architecture that is not a causal LM
            raise ParamCountError(f"cannot build this model from its config: {err}") from None


def _count(model, trainable_only: bool = False) -> int:
    # parameters() yields a shared (tied) tensor once, so tied embeddings are not counted twice.
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def summary_line(counts: dict) -> str:
    """The figures in PEFT's own wording, so they can be compared with a training log at a glance."""
    return (f"trainable params: {counts['trainable']:,} || all params: {counts['all']:,} "
            f"|| trainable%: {100 * counts['share']:.4f}")
