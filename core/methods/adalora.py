"""AdaLoRA: LoRA whose rank budget moves to the layers that need it during training (Zhang et al., 2023).

Each adapted layer holds an SVD-shaped update P diag(E) Q starting at rank `init_r`. After `tinit`
warm-up steps a rank allocator scores every singular value by how much the loss depends on it and
prunes the least important ones, shrinking the total budget on a cubic schedule until it reaches
`target_r` per layer on average; the last `tfinal` steps train with the final ranks fixed.

Two pieces are not done by the Trainer and live in the callback below: the allocator must be called
after every optimiser step, and the orthogonality regulariser PEFT adds to `outputs.loss` never
reaches the gradients, because TRL's SFTTrainer computes its loss from the log-probabilities itself.
"""
from __future__ import annotations

from dataclasses import dataclass

from core.methods.targets import TOGGLES, resolve_targets
from core.spec.schema import MAX_STEPS, opt

NAME = "adalora"
EXPLAINER = (
    "AdaLoRA starts every adapted layer at a generous rank and, while training, prunes the directions that "
    "matter least, so the rank budget ends up in the layers that need it (the chart shows the ranks per layer "
    "over time). At the same final budget it often beats LoRA with a fixed rank; it costs some speed (an "
    "importance score per weight is updated every step) and more settings: when pruning starts and ends, "
    "and how far it goes."
)


@dataclass
class Params:
    init_r: int = opt(12, "Rank every adapted layer starts with. About 1.5x the target rank leaves room to choose.", lo=1, hi=1024)
    target_r: int = opt(
        8,
        "Average rank per layer left after pruning: the final budget is this x the number of adapted matrices. "
        "Must not exceed the initial rank.",
        lo=1,
        hi=1024,
    )
    tinit: int = opt(
        0,
        "Steps of warm-up at full rank before pruning starts, so importance scores settle first.",
        lo=0,
        hi=MAX_STEPS,
    )
    tfinal: int = opt(
        0,
        "Steps at the end that train with the final ranks fixed; pruning must finish before them.",
        lo=0,
        hi=MAX_STEPS,
    )
    delta_t: int = opt(1, "Prune every this many steps while the budget shrinks. 1 follows the schedule most closely.", lo=1,
                      hi=MAX_STEPS)
    beta1: float = opt(
        0.85,
        "Smoothing of the importance scores across steps (0-1). Higher is steadier but slower to react.",
        lo=0.01,
        hi=0.999,
    )
    beta2: float = opt(
        0.85,
        "Smoothing of the uncertainty of those scores (0-1); uncertain directions are kept longer.",
        lo=0.01,
        hi=0.999,
    )
    orth_weight: float = opt(
        0.5,
        "Weight of the penalty that keeps the singular vectors orthogonal, so pruning one direction does not "
        "disturb the others. 0 turns it off; large values slow learning of the task itself.",
        lo=0.0,
        hi=100.0,
    )
    alpha: float = opt(32.0, "Scale of the update (applied as alpha / rank), as in LoRA.", lo=0.0, hi=100000)
    dropout: float = opt(0.0, "Dropout on the adapter's input; 0.05-0.1 can help small datasets generalise.", lo=0.0, hi=0.9)
    targets: list[str] = opt(
        ["all-linear"],
        "Which layers get adapters: query, key, value, projection, mlp, head or all-linear. More layers give the "
        "allocator more places to move rank between.",
        choices=TOGGLES,
        multi=True,
    )


SECTIONS = {"adalora": Params}


def check(spec) -> list[tuple[str, str]]:
    p = spec.adalora
    problems = []
    if not p.targets:
        problems.append(("adalora.targets", "choose at least one target layer"))
    if p.target_r > p.init_r:
        problems.append(("adalora.target_r", f"the target rank {p.target_r} is above the initial rank {p.init_r}; "
                                              "AdaLoRA can only prune, so lower it or raise adalora.init_r"))
    steps = spec.train.max_steps  # with epochs instead, the step count is known only once the data is read
    if steps and p.tinit + p.tfinal >= steps:
        field = "adalora.tfinal" if p.tfinal else "adalora.tinit"  # the one that was set
        problems.append((field, _no_room(p, steps) + " (train.max_steps)"))
    from core.runtime.layout import splits_optimiser

    if splits_optimiser(spec):
        problems.append(("runtime.strategy", f"AdaLoRA's rank allocator reads whole adapter matrices and their "
                                             f"gradients at every step; {spec.runtime.strategy} splits them among the "
                                             "processes. Use single or ddp"))
    return problems


def _no_room(p, steps: int) -> str:
    return (f"adalora.tinit ({p.tinit}) + adalora.tfinal ({p.tfinal}) leave no steps for pruning in a run of "
            f"{steps} steps; lower them or train longer")


def peft_config(spec, model, plan):
    from peft import AdaLoraConfig

    p = spec.adalora
    if plan is None:
        # Only the layers are asked for (parameter counting). The schedule changes no shape, but PEFT insists
        # on one with a pruning phase; the shortest such schedule is given, and it is never run.
        total_steps = p.tinit + p.tfinal + 1
    else:
        total_steps = plan.total_steps
        if p.tinit + p.tfinal >= total_steps:
            raise ValueError(_no_room(p, total_steps))
    return AdaLoraConfig(
        init_r=p.init_r,
        target_r=p.target_r,
        tinit=p.tinit,
        tfinal=p.tfinal,
        deltaT=p.delta_t,
        beta1=p.beta1,
        beta2=p.beta2,
        # The regulariser is applied by RankAllocation below. PEFT would add it to outputs.loss, which TRL
        # ignores; leaving it on would compute it for nothing (and count it twice on a path that used it).
        orth_reg_weight=0.0,
        total_step=total_steps,
        lora_alpha=p.alpha,
        lora_dropout=p.dropout,
        target_modules=resolve_targets(model, p.targets),
        task_type="CAUSAL_LM",
    )


def callbacks(spec, peft_model, plan) -> list:
    from core.methods.adalora_ranks import RankAllocation  # transformers: only when training

    return [RankAllocation(peft_model, spec.adalora.orth_weight, plan.total_steps)]


def layer_label(param_name: str) -> str:
    """'base_model.model.model.layers.3.self_attn.q_proj.lora_E.default' -> '3.self_attn.q_proj'."""
    module = param_name.rsplit(".lora_E", 1)[0]
    return module.split("layers.", 1)[1] if "layers." in module else module
