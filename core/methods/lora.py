"""LoRA: train small low-rank matrices beside frozen weights (Hu et al., 2021)."""
from __future__ import annotations

from dataclasses import dataclass

from core.spec.schema import opt
from core.targets import TOGGLES, resolve_targets

NAME = "lora"
EXPLAINER = (
    "LoRA freezes the base model and learns a pair of small matrices (rank r) beside each chosen layer. "
    "Only about 0.1-1% of the weights train, so optimiser memory is tiny and the adapter file is a few MB; "
    "the base weights still sit in memory at full precision. Higher rank learns more but costs more."
)


@dataclass
class Params:
    r: int = opt(8, "Rank of the update matrices. 8-16 suits most tasks; higher learns more and costs more memory.", lo=1, hi=1024)
    alpha: float = opt(16.0, "Scale of the update (applied as alpha / r). About 2x the rank is the usual rule of thumb.", lo=0.0, hi=100000)
    dropout: float = opt(
        0.0,
        "Dropout on the adapter's input; 0.05-0.1 can help small datasets generalise, but every adapted layer then "
        "keeps a copy of its input: measured on the bundled model, 0.05 cost 22% of the speed and 0.9 GB of memory.",
        lo=0.0,
        hi=0.9,
    )
    targets: list[str] = opt(
        ["all-linear"],
        "Which layers get adapters: query, key, value, projection (attention output), mlp, head (output layer), "
        "or all-linear. The original paper used query and value; all linear layers usually learn better for a little more memory.",
        choices=TOGGLES,
        multi=True,
    )


SECTIONS = {"lora": Params}


def check(spec) -> list[tuple[str, str]]:
    if not spec.lora.targets:
        return [("lora.targets", "choose at least one target layer")]
    return []


def peft_config(spec, model, plan=None):
    from peft import LoraConfig

    p = spec.lora
    return LoraConfig(
        r=p.r,
        lora_alpha=p.alpha,
        lora_dropout=p.dropout,
        target_modules=resolve_targets(model, p.targets),
        bias="none",
        task_type="CAUSAL_LM",
    )
