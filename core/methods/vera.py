"""VeRA: one pair of frozen random matrices shared by every layer, and two small trained vectors per layer
(Kopiczko et al., 2024)."""
from __future__ import annotations

from dataclasses import dataclass

from core.methods.targets import TOGGLES, resolve_targets
from core.spec.schema import opt

NAME = "vera"
EXPLAINER = (
    "VeRA shares one pair of frozen random matrices (rank r, sized for the largest adapted layer) across all "
    "layers and trains only two scaling vectors per layer: a few percent of LoRA's trainable parameters, so "
    "optimiser memory and the trained part of the adapter are tiny. Because so little trains it needs high "
    "ranks (256 and up, cheap because the matrices are frozen) and learning rates around ten times LoRA's; "
    "it usually learns somewhat less than LoRA on hard tasks."
)


@dataclass
class Params:
    r: int = opt(
        256,
        "Rank of the shared random matrices. They are frozen and shared, so high ranks (256-1024) add only r trainable "
        "numbers per layer; but every adapted layer computes and keeps a tokens x r intermediate, so time and "
        "activation memory grow with r. Too low a rank starves the method.",
        lo=1,
        hi=8192,
    )
    d_initial: float = opt(
        0.1,
        "Starting value of each layer's scaling vector d. Small values (about 0.1) keep early training stable; "
        "larger ones learn faster at first but can diverge.",
        lo=0.0,
        hi=10.0,
    )
    projection_seed: int = opt(
        0,
        "Seed of the shared random matrices. Any value works; it matters only to rebuild them when they are not saved.",
        lo=0,
        hi=2**31 - 1,
    )
    save_projection: bool = opt(
        True,
        "Store the shared random matrices in the adapter. Off makes the adapter file smaller, but reloading then "
        "regenerates them from the seed, which is not guaranteed to give the same numbers on another machine or version.",
    )
    dropout: float = opt(
        0.0,
        "Dropout on the adapter's input; 0.05-0.1 can help small datasets generalise, at some speed and memory.",
        lo=0.0,
        hi=0.9,
    )
    targets: list[str] = opt(
        ["all-linear"],
        "Which layers get VeRA: query, key, value, projection (attention output), mlp, or all-linear. "
        "The output layer (head) cannot be chosen: the shared matrices would grow to the vocabulary's size.",
        choices=TOGGLES,
        multi=True,
    )


SECTIONS = {"vera": Params}


def check(spec) -> list[tuple[str, str]]:
    targets = spec.vera.targets
    if not targets:
        return [("vera.targets", "choose at least one target layer")]
    if "head" in targets:
        # The shared B is sized for the widest adapted output; the head's is the vocabulary, often tens of thousands.
        return [("vera.targets", "VeRA cannot adapt the head: its shared matrices would become vocabulary-sized; "
                                 "remove head from the targets")]
    return []


def peft_config(spec, model, plan=None):
    from peft import VeraConfig

    p = spec.vera
    return VeraConfig(
        r=p.r,
        target_modules=resolve_targets(model, p.targets),
        projection_prng_key=p.projection_seed,
        save_projection=p.save_projection,
        vera_dropout=p.dropout,
        d_initial=p.d_initial,
        bias="none",
        task_type="CAUSAL_LM",
    )
