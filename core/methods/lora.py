"""LoRA: train small low-rank matrices beside frozen weights (Hu et al., 2021).

Its section also carries the LoRA-family options, each a PEFT feature:
  rslora      scale alpha / sqrt(r) instead of alpha / r (Kalajdzievski, 2023)
  init        how A and B start: PEFT's default, gaussian, or PiSSA's principal singular vectors (Meng et al., 2024)
  plus_ratio  LoRA+: B learns `plus_ratio` times faster than A (Hayou et al., 2024)
  fa          LoRA-FA: A stays at its initial value, only B trains (Zhang et al., 2023)
DoRA, QLoRA and LongLoRA extend this method, so its section and hooks apply to them too; `dora_problems`
and `quantised_problems` name the options a DoRA update or a quantised base cannot take.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from core.methods.targets import TOGGLES, resolve_targets
from core.spec.schema import opt

NAME = "lora"
EXPLAINER = (
    "LoRA freezes the base model and learns a pair of small matrices (rank r) beside each chosen layer. "
    "Only about 0.1-1% of the weights train, so optimiser memory is tiny and the adapter file is a few MB; "
    "the base weights still sit in memory at full precision. Higher rank learns more but costs more."
)

# Spec init choice -> PEFT's init_lora_weights. pissa_fast uses a randomised SVD of 16 iterations, which
# PiSSA's authors found as good as the full SVD at a fraction of its time on large layers.
INITS = {"default": True, "gaussian": "gaussian", "pissa": "pissa", "pissa_fast": "pissa_niter_16"}


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
    rslora: bool = opt(
        False,
        "Rank-stabilised LoRA: scale the update by alpha / sqrt(r) instead of alpha / r. At high ranks (32 and up) "
        "plain LoRA shrinks the update so much that extra rank barely helps; rsLoRA lets it pay off. Costs nothing, "
        "but the update is sqrt(r) times larger at the same alpha, so lower alpha or the learning rate if loss jumps.",
    )
    init: str = opt(
        "default",
        "How the adapter starts. default: A random, B zero, so training starts exactly at the base model. "
        "gaussian: the same with a Gaussian A. pissa: A and B start from the weight's largest singular directions "
        "(the base keeps the rest), which often converges faster and ends better, but costs an SVD of every adapted "
        "layer before training (pissa_fast: a quicker approximate SVD). The saved adapter is converted to plain LoRA "
        "(twice the rank) so it works on the original base model.",
        choices=list(INITS),
    )
    plus_ratio: float = opt(
        0.0,
        "LoRA+: train B this many times faster than A (0 = off; the paper suggests 16). Often reaches the same loss "
        "in fewer steps at no extra memory; too high a ratio with a high learning rate can diverge, so halve the "
        "learning rate when you turn it on.",
        lo=0.0,
        hi=1000.0,
    )
    fa: bool = opt(
        False,
        "LoRA-FA: keep A frozen at its random start and train only B. Halves the trainable parameters and the "
        "optimiser memory, and the layer inputs need not be kept for A's gradient; it usually learns a little less "
        "than LoRA at the same rank, so consider a higher rank.",
    )


SECTIONS = {"lora": Params}


def check(spec) -> list[tuple[str, str]]:
    p = spec.lora
    problems = []
    if not p.targets:
        problems.append(("lora.targets", "choose at least one target layer"))
    if 0 < p.plus_ratio < 1:
        problems.append(("lora.plus_ratio", "LoRA+ gives B a larger learning rate than A: use 0 (off) or a ratio of at least 1"))
    if p.fa and p.plus_ratio:
        problems.append(("lora.plus_ratio", "LoRA+ sets B's learning rate relative to A's, but with lora.fa A does not train; "
                                            "set lora.plus_ratio to 0 and raise the learning rate instead"))
    return problems + strategy_problems(spec)


def strategy_problems(spec) -> list[tuple[str, str]]:
    """Options of this section that FSDP and DeepSpeed cannot take. Both hand the optimiser flattened shards of
    the weights, while LoRA+ and LoRA-FA build optimisers that need whole A and B matrices; and PiSSA's
    conversion at save time needs the whole adapter and its starting point in one process."""
    from core.runtime.layout import sharded, splits_optimiser

    p, strategy = spec.lora, spec.runtime.strategy
    problems = []
    if splits_optimiser(spec) and p.fa:
        problems.append(("lora.fa", f"LoRA-FA's optimiser needs whole A and B matrices; runtime.strategy {strategy} "
                                    "splits them. Turn lora.fa off, or use ddp"))
    if splits_optimiser(spec) and p.plus_ratio:
        problems.append(("lora.plus_ratio", f"LoRA+ builds its own optimiser over whole matrices; runtime.strategy "
                                            f"{strategy} splits them. Set it to 0, or use ddp"))
    if sharded(spec) and uses_pissa(spec):
        problems.append(("lora.init", f"PiSSA's adapter is converted at save time from the whole adapter and its "
                                      f"starting point; runtime.strategy {strategy} splits them. Use default or gaussian, "
                                      "or ddp"))
    return problems


def dora_problems(spec) -> list[tuple[str, str]]:
    """Options of this section that DoRA (and QDoRA) cannot take, named by field."""
    p = spec.lora
    problems = []
    if uses_pissa(spec):
        problems.append(("lora.init", "PiSSA cannot be combined with DoRA: its conversion to a plain adapter on the "
                                      "original base does not carry DoRA's magnitude vectors; use default or gaussian"))
    if p.fa:
        problems.append(("lora.fa", "LoRA-FA cannot be combined with DoRA: PEFT's LoRA-FA optimiser pairs each A with its B "
                                    "and has no rule for DoRA's magnitude vectors; turn lora.fa off"))
    return problems


def quantised_problems(spec) -> list[tuple[str, str]]:
    """Options of this section that a quantised (4/8-bit) base cannot take: PEFT's PiSSA needs the full-precision
    weight for its SVD and refuses quantised layers, and the residual it leaves would have to be re-quantised."""
    if uses_pissa(spec):
        return [("lora.init", "PiSSA needs a full-precision base (it takes an SVD of each weight); use default or "
                              "gaussian with a quantised base")]
    return []


def uses_pissa(spec) -> bool:
    return spec.lora.init.startswith("pissa")


def peft_config(spec, model, plan=None):
    from peft import LoraConfig

    p = spec.lora
    return LoraConfig(
        r=p.r,
        lora_alpha=p.alpha,
        lora_dropout=p.dropout,
        target_modules=resolve_targets(model, p.targets),
        use_rslora=p.rslora,
        init_lora_weights=INITS[p.init],
        bias="none",
        task_type="CAUSAL_LM",
    )


# The adapter as PiSSA initialised it, kept on the model (adapter-sized, so a few MB) until the save converts.
_PISSA_INITIAL = "workbench_pissa_initial_adapter"


def after_wrap(spec, peft_model) -> None:
    if spec.lora.fa:
        # LoRA-FA: A keeps its initial value. Freezing here (not only in the optimiser) makes the parameter
        # counts, the trainer's own report and the gradients all agree that only B trains.
        for name, param in peft_model.named_parameters():
            if "lora_A" in name:
                param.requires_grad_(False)
    if uses_pissa(spec):
        from peft.utils import get_peft_model_state_dict

        initial = {k: v.detach().clone() for k, v in get_peft_model_state_dict(peft_model).items()}
        setattr(peft_model, _PISSA_INITIAL, initial)


def optimizer(spec, peft_model, args):
    p = spec.lora
    if p.fa:
        from peft.optimizers import create_lorafa_optimizer

        # PEFT's LoRA-FA optimiser projects B's gradient through the frozen A (and each layer's scaling,
        # so rsLoRA is honoured), which plain AdamW on B alone would not.
        return create_lorafa_optimizer(peft_model, r=p.r, lora_alpha=p.alpha, lr=args.learning_rate,
                                       weight_decay=args.weight_decay)
    if p.plus_ratio:
        import torch
        from peft.optimizers import create_loraplus_optimizer

        return create_loraplus_optimizer(
            peft_model, torch.optim.AdamW, lr=args.learning_rate, loraplus_lr_ratio=p.plus_ratio,
            loraplus_weight_decay=args.weight_decay, betas=(args.adam_beta1, args.adam_beta2), eps=args.adam_epsilon,
        )
    return None


def callbacks(spec, peft_model, plan) -> list:
    if not spec.lora.plus_ratio:
        return []
    from core.methods.group_rate import GroupRateCallback

    # The trainer logs A's rate as learning_rate; B's, ratio times higher, goes beside it.
    return [GroupRateCallback("learning_rate_b", [p for n, p in peft_model.named_parameters() if "lora_B" in n])]


def save_adapter(spec, peft_model, folder: Path) -> None:
    if not uses_pissa(spec):
        peft_model.save_pretrained(folder)
        return
    # PiSSA moved the top singular directions out of the base weights, so its raw adapter only fits that
    # residual base. PEFT rewrites it as a plain LoRA of twice the rank (A|A0, B|-B0), which fits the
    # original base, given the initial adapter saved as a folder beside the output.
    import tempfile

    from peft.utils import get_peft_model_state_dict
    from safetensors.torch import load_file, save_file

    initial = getattr(peft_model, _PISSA_INITIAL)
    with tempfile.TemporaryDirectory(dir=Path(folder).parent, prefix=".pissa-") as tmp:
        initial_dir = Path(tmp) / "pissa_init"  # its name becomes a temporary adapter name inside PEFT
        initial_dir.mkdir()
        save_file({k: v.contiguous() for k, v in initial.items()}, initial_dir / "adapter_model.safetensors")
        peft_model.save_pretrained(folder, path_initial_model_for_weight_conversion=str(initial_dir))
    # That rewrite keeps only the LoRA matrices. Weights trained in full beside them (a method's
    # modules_to_save, e.g. LongLoRA's embeddings and norms) are the same on either base: put them back.
    # (Cloned: a tied output layer shares its tensor with the embedding, which safetensors refuses to save twice.)
    in_full = {k: v.detach().clone() for k, v in get_peft_model_state_dict(peft_model).items()
               if ".lora_A." not in k and ".lora_B." not in k}
    if in_full:
        weights = Path(folder) / "adapter_model.safetensors"
        save_file({**load_file(weights), **in_full}, weights, metadata={"format": "pt"})
