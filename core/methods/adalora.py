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

from transformers import TrainerCallback

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
    return [RankAllocation(peft_model, spec.adalora.orth_weight, plan.total_steps)]


def layer_label(param_name: str) -> str:
    """'base_model.model.model.layers.3.self_attn.q_proj.lora_E.default' -> '3.self_attn.q_proj'."""
    module = param_name.rsplit(".lora_E", 1)[0]
    return module.split("layers.", 1)[1] if "layers." in module else module


class RankAllocation(TrainerCallback):
    """Runs AdaLoRA's rank allocator and orthogonality penalty inside the Trainer's loop; reports ranks."""

    def __init__(self, peft_model, orth_weight: float, planned_steps: int):
        self.model = peft_model
        self.adapter = peft_model.active_adapter
        self.config = peft_model.peft_config[self.adapter]
        self.orth_weight = orth_weight
        self.planned_steps = planned_steps
        self.trainer_steps = None
        self.orth_value = None

    def on_train_begin(self, args, state, control, **kwargs):
        # The schedule was sized from planned_steps before the Trainer existed; its own count is the truth.
        self.trainer_steps = state.max_steps
        print(f"[workbench] adalora total_step: planned {self.planned_steps}, trainer {state.max_steps}", flush=True)
        if state.max_steps != self.config.total_step:
            self.model.base_model.rankallocator.set_total_step(state.max_steps)

    def on_step_begin(self, args, state, control, optimizer=None, **kwargs):
        # Before the step's first forward pass the gradients are empty, so the penalty's gradient is added
        # exactly once per optimiser step and gradient clipping sees it, like a term of the loss.
        # (Its value is kept for metrics.jsonl even when the weight is 0, to show how orthogonal P and Q stay.)
        import torch

        with torch.set_grad_enabled(self.orth_weight > 0):
            value = self.orthogonality()
        self.orth_value = round(value.item(), 6)
        if self.orth_weight > 0:
            penalty = self.orth_weight * value
            scaler = getattr(optimizer, "scaler", None)  # fp16 mixed precision scales the loss's gradients
            (scaler.scale(penalty) if scaler is not None else penalty).backward()

    def orthogonality(self):
        """Mean over A and B matrices of ||P P^T - I||_F, the penalty of the AdaLoRA paper."""
        import torch

        terms = []
        for name, p in self.model.named_parameters():
            if not p.requires_grad or f".{self.adapter}" not in name:
                continue
            if "lora_A" in name:
                cov = p @ p.T
            elif "lora_B" in name:
                cov = p.T @ p
            else:
                continue
            terms.append(torch.linalg.matrix_norm(cov - torch.eye(cov.shape[0], device=cov.device, dtype=cov.dtype)))
        return torch.stack(terms).mean()

    def on_optimizer_step(self, args, state, control, **kwargs):
        # After the update, before zero_grad: the allocator scores weights by weight x gradient.
        # state.global_step counts finished steps, so this step is number global_step + 1; the last
        # step then equals total_step and, with tfinal 0, fixes the final budget exactly.
        self.model.base_model.update_and_allocate(state.global_step + 1)

    def ranks(self) -> dict[str, int]:
        pattern = self.config.rank_pattern or {}  # empty until the first pruning: every layer at init_r
        out = {}
        for name, p in self.model.named_parameters():
            if f"lora_E.{self.adapter}" not in name:
                continue
            # The allocator keys by the inner model's names; saving a checkpoint strips the adapter name.
            inner = name.split("base_model.model.", 1)[-1]
            kept = pattern.get(inner, pattern.get(inner.replace(f".{self.adapter}", "")))
            out[layer_label(name)] = int(sum(kept)) if kept is not None else int(p.shape[0])
        return out

    def metric_extras(self, state) -> dict:
        extras = {"ranks": self.ranks()}
        if self.orth_value is not None:
            extras["orth_reg"] = self.orth_value
        return extras
