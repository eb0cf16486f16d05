"""Map the LoRA papers' target toggles to each architecture's module names.

People choose targets as query/key/value/projection/mlp/head; models call those
layers q_proj, c_attn, query_key_value, ... We look at the model's real linear
layers and keep the names that belong to each toggle, so any architecture that
uses one of the common naming schemes works without a per-model table.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch.nn as nn

TOGGLES = ["query", "key", "value", "projection", "mlp", "head", "all-linear"]

# Last component of a module's name -> the toggles it serves. Fused query/key/value
# layers (GPT-2's c_attn, Falcon/NeoX's query_key_value) serve all three.
_NAME_TO_TOGGLES = {
    "q_proj": {"query"}, "query": {"query"}, "wq": {"query"},
    "k_proj": {"key"}, "key": {"key"}, "wk": {"key"},
    "v_proj": {"value"}, "value": {"value"}, "wv": {"value"},
    "qkv_proj": {"query", "key", "value"}, "c_attn": {"query", "key", "value"},
    "query_key_value": {"query", "key", "value"}, "Wqkv": {"query", "key", "value"},
    "o_proj": {"projection"}, "out_proj": {"projection"}, "wo": {"projection"}, "dense": {"projection"},
    "gate_proj": {"mlp"}, "up_proj": {"mlp"}, "down_proj": {"mlp"}, "gate_up_proj": {"mlp"},
    "fc1": {"mlp"}, "fc2": {"mlp"}, "c_fc": {"mlp"}, "w1": {"mlp"}, "w2": {"mlp"}, "w3": {"mlp"},
    "dense_h_to_4h": {"mlp"}, "dense_4h_to_h": {"mlp"},
    "lm_head": {"head"},
}


def _linear_names(model: nn.Module) -> list[str]:
    import torch.nn as nn  # here: reading a job must not import torch

    # Quantised and GPT-2-style layers are not nn.Linear subclasses but PEFT wraps them all the same.
    kinds = ("Linear4bit", "Linear8bitLt", "Conv1D")
    return [n for n, m in model.named_modules() if isinstance(m, nn.Linear) or type(m).__name__ in kinds]


def resolve_targets(model: nn.Module, toggles: list[str]) -> list[str]:
    """Return the module-name suffixes PEFT should wrap; raise ValueError naming a toggle that matches nothing."""
    chosen = set(toggles)
    if not chosen:
        raise ValueError("choose at least one target (query, key, value, projection, mlp, head or all-linear)")
    names = _linear_names(model)
    matched: dict[str, set[str]] = {t: set() for t in chosen}
    for full in names:
        leaf = full.rsplit(".", 1)[-1]
        serves = _NAME_TO_TOGGLES.get(leaf, set())
        # GPT-2 names both projections c_proj; the one under .attn. is the attention output.
        if leaf == "c_proj":
            parent = full.rsplit(".", 2)[-2]
            serves = {"projection"} if parent == "attn" else {"mlp"}
            leaf = f"{parent}.c_proj"  # PEFT matches name suffixes, so this keeps the two apart
        if "all-linear" in chosen and leaf != "lm_head":
            matched["all-linear"].add(leaf)
        for toggle in serves & chosen:
            matched[toggle].add(leaf)
    empty = [t for t, found in matched.items() if not found]
    if empty:
        raise ValueError(f"target '{empty[0]}' matches no linear layer in this model")
    return sorted(set().union(*matched.values()))
