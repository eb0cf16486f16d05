"""LongLoRA: extend a model's context window cheaply (Chen et al., 2023, "LongLoRA").

It extends LoRA (every LoRA option applies: rsLoRA, PiSSA, LoRA+, LoRA-FA) with three changes:
  1. RoPE scaling stretches the positions the model was pretrained on to the target context
     (factor = target context / the model's max_position_embeddings), set when the base loads.
  2. Shifted sparse attention (S2-Attn, core/methods/s2_attention.py) during training only: tokens
     attend inside groups of a quarter of the sequence, half of the heads with groups shifted by half
     a group, so attention costs about a quarter of full attention's time and memory. Chat and export
     load the base with the same RoPE scaling and ordinary full attention.
  3. The embeddings and normalisation layers train too (the paper found LoRA alone does not adapt to
     long contexts); they are few parameters except the embedding matrix, which makes the adapter
     as large as the vocabulary times the hidden size.
"""
from __future__ import annotations

from dataclasses import dataclass

from core.methods.registry import base
from core.spec.schema import opt

NAME = "longlora"
EXTENDS = "lora"
EXPLAINER = (
    "LongLoRA teaches a model to read longer texts than it was trained on. It stretches the rotary "
    "position embeddings to the target context, trains LoRA adapters plus the embeddings and norms, and "
    "during training lets each token attend only within a group of a quarter of the sequence (half the heads "
    "with groups shifted by half a group, so information still flows along the text). That sparse "
    "attention costs about a quarter of full attention's time and memory, which is what makes training "
    "on long sequences affordable; at chat and export the model uses ordinary full attention. The "
    "projections and MLP still cost the same per token, so on short sequences it saves little, and "
    "training the embeddings makes the adapter tens of MB larger."
)


@dataclass
class LongLoraParams:
    target_context: int = opt(
        16384,
        "The context length (tokens) the model should handle after training. RoPE is stretched by target / the "
        "model's own context (max_position_embeddings); at or below the model's own context nothing is stretched "
        "and only the sparse attention applies. The paper trains on sequences as long as the target.",
        lo=128,
        hi=1048576,
    )
    rope_scaling: str = opt(
        "linear",
        "How positions are stretched. linear (position interpolation, the paper's choice) squeezes all positions "
        "evenly; yarn stretches low frequencies more than high ones and usually keeps short-text quality better; "
        "dynamic (NTK) only changes anything on sequences longer than the model's own context.",
        choices=["linear", "dynamic", "yarn"],
    )
    group_size_ratio: float = opt(
        0.25,
        "Share of the sequence in each attention group during training (1/4 in the paper). Smaller groups are "
        "faster and use less memory but see less context per step; it must split the sequence into a whole "
        "number of groups (0.5, 0.25, 0.125, ...).",
        lo=0.001,
        hi=1.0,
    )
    train_embeddings: bool = opt(
        True,
        "Also train the token embeddings (LongLoRA's recipe). Helps long-context adaptation; adds the whole "
        "embedding matrix to the adapter: 230 MB on the bundled model, whose output layer shares the embedding "
        "and is stored a second time by PEFT.",
    )
    train_norms: bool = opt(
        True,
        "Also train the normalisation layers (LongLoRA's recipe); a few thousand parameters per layer.",
    )


SECTIONS = {"longlora": LongLoraParams}


def groups(spec) -> int:
    return round(1 / spec.longlora.group_size_ratio)


def _base_config(spec):
    """The base model's config when it is readable offline, else None (checks that need it are then skipped)."""
    from transformers import AutoConfig

    from core.models.source import ModelSourceError, resolve_model

    try:
        path = resolve_model(spec.model.path)
        return AutoConfig.from_pretrained(path, trust_remote_code=spec.model.trust_remote_code)
    except (ModelSourceError, OSError, ValueError):
        return None


def _rope_parameters(config) -> dict | None:
    rope = getattr(config, "rope_parameters", None)
    if not rope and getattr(config, "rope_theta", None):
        rope = {"rope_type": "default", "rope_theta": config.rope_theta}
    return dict(rope) if rope else None


def _model_problems(spec, config) -> list[tuple[str, str]]:
    """Why this model cannot take LongLoRA, naming model.path."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING

    kind = getattr(config, "model_type", type(config).__name__)
    try:
        model_class = MODEL_FOR_CAUSAL_LM_MAPPING[type(config)]
    except KeyError:
        return [("model.path", f"{kind} is not a causal language model transformers knows")]
    if not getattr(model_class, "_supports_attention_backend", False):
        return [("model.path", f"{model_class.__name__} does not route attention through transformers' attention "
                               "interface, so LongLoRA's shifted sparse attention cannot be plugged into it")]
    rope = _rope_parameters(config)
    if rope is None:
        return [("model.path", f"{kind} has no rotary position embeddings (RoPE), which LongLoRA stretches")]
    if "rope_type" not in rope:
        return [("model.path", f"{kind} uses a different RoPE per layer type, which LongLoRA here does not stretch")]
    if rope["rope_type"] != "default":
        return [("model.path", f"{kind} already uses '{rope['rope_type']}' RoPE scaling; LongLoRA here starts from plain RoPE")]
    layer_types = getattr(config, "layer_types", None) or []
    if "sliding_attention" in layer_types or getattr(config, "use_sliding_window", False):
        return [("model.path", f"{kind} uses sliding-window attention layers, which S2-Attn would replace")]
    return []


def check(spec) -> list[tuple[str, str]]:
    problems = base(NAME).check(spec)
    p = spec.longlora
    n = 1 / p.group_size_ratio
    if abs(n - round(n)) > 1e-6:
        problems.append(("longlora.group_size_ratio",
                         f"{p.group_size_ratio} does not split a sequence into a whole number of groups; use 1/n, e.g. 0.5, 0.25 or 0.125"))
    elif spec.data.max_length * p.group_size_ratio < 8:
        problems.append(("longlora.group_size_ratio",
                         f"groups of {spec.data.max_length * p.group_size_ratio:g} tokens (data.max_length x ratio) are too "
                         "small to learn from; raise the ratio or data.max_length"))
    if spec.data.max_length > p.target_context:
        problems.append(("longlora.target_context",
                         f"{p.target_context} is below data.max_length ({spec.data.max_length}): training samples would run past "
                         "the context the positions are stretched to; raise target_context or lower data.max_length"))
    return problems


def check_launch(spec) -> list[tuple[str, str]]:
    """What the base model's config.json says about LongLoRA (read only at Start: the model may be gone later)."""
    problems = base(NAME).check_launch(spec)
    config = _base_config(spec)
    if config is not None:
        problems += _model_problems(spec, config)
        if spec.longlora.train_embeddings and "head" in spec.lora.targets and getattr(config, "tie_word_embeddings", False):
            problems.append(("lora.targets", "the output layer shares its weights with the embeddings, which already "
                                             "train in full (longlora.train_embeddings); drop 'head'"))
    return problems


def rope_kwargs(spec) -> dict:
    """from_pretrained keyword arguments that stretch RoPE to the target context, or {} when no stretch is needed."""
    from transformers import AutoConfig

    from core.models.source import resolve_model

    config = AutoConfig.from_pretrained(resolve_model(spec.model.path, convert=True),
                                        trust_remote_code=spec.model.trust_remote_code)
    original = config.max_position_embeddings
    target = spec.longlora.target_context
    if target <= original:
        return {}
    kind = spec.longlora.rope_scaling
    rope = {**_rope_parameters(config), "rope_type": kind, "factor": target / original}
    if kind == "dynamic":
        # Dynamic NTK reads max_position_embeddings as the length beyond which it starts to stretch.
        return {"rope_parameters": rope}
    if kind == "yarn":
        rope["original_max_position_embeddings"] = original
    return {"rope_parameters": rope, "max_position_embeddings": target}


def load_kwargs(spec, device: str) -> dict:
    from core.methods import s2_attention

    s2_attention.register()
    return {"attn_implementation": s2_attention.NAME, **rope_kwargs(spec)}


def inference_kwargs(spec) -> dict:
    return rope_kwargs(spec)  # the same positions, with the default (full) attention


def prepare_model(spec, model):
    from core.methods import s2_attention

    setattr(model.config, s2_attention.GROUPS_ATTR, groups(spec))
    return model


def extra_trainable_modules(spec, model) -> list[str]:
    """Names (suffixes) of the embedding and normalisation modules to train in full, found on the model."""
    names: set[str] = set()
    if spec.longlora.train_embeddings:
        embedding = model.get_input_embeddings()
        names |= {n.rsplit(".", 1)[-1] for n, m in model.named_modules() if m is embedding}
    if spec.longlora.train_norms:
        names |= {n.rsplit(".", 1)[-1] for n, m in model.named_modules()
                  if "norm" in type(m).__name__.lower() and not list(m.children())}
    return sorted(names)


def peft_config(spec, model, plan=None):
    config = base(NAME).peft_config(spec, model, plan)
    config.modules_to_save = extra_trainable_modules(spec, model) or None
    if spec.longlora.train_embeddings and getattr(model.config, "tie_word_embeddings", False):
        config.ensure_weight_tying = True  # the output layer keeps sharing the (now trained) embedding
    return config
