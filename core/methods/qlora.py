"""QLoRA: LoRA on a base model whose linear layers are stored in 4 or 8 bits (Dettmers et al., 2023).

It extends LoRA: the base weights load through bitsandbytes (NF4/FP4 with optional double quantisation,
or LLM.int8), PEFT's k-bit preparation readies the model for training, and the adapter is LoRA's, so
every LoRA option applies here too except PiSSA, which needs a full-precision base.
"""
from __future__ import annotations

from dataclasses import dataclass

from core.methods import lora
from core.methods.registry import base
from core.spec.schema import opt

NAME = "qlora"
EXTENDS = "lora"
EXPLAINER = (
    "QLoRA stores the frozen base model's linear layers in 4 bits (NF4, optionally with the quantisation "
    "constants quantised again) or 8 bits, and trains ordinary LoRA matrices on top in higher precision. "
    "The base model then needs about a quarter (4-bit) or half (8-bit) of its full-precision memory, which "
    "is what lets big models fine-tune on one GPU. The price is time: every forward and backward pass "
    "dequantises the weights; measurements in the LoRA literature found about a third less memory for "
    "roughly 40-50% more time per step than plain LoRA. Quality usually stays close to 16-bit LoRA."
)


@dataclass
class QuantParams:
    bits: int = opt(
        4,
        "How many bits each base weight is stored in. 4 saves the most memory (the QLoRA recipe); 8 keeps "
        "more of the base model's accuracy and saves about half.",
        choices=[4, 8],
    )
    quant_type: str = opt(
        "nf4",
        "4-bit number format. nf4 (NormalFloat) matches the bell-shaped spread of trained weights and is "
        "usually more accurate than plain fp4. Ignored for 8 bits.",
        choices=["nf4", "fp4"],
    )
    double_quant: bool = opt(
        True,
        "Also quantise the per-block scaling constants: saves about 0.4 bits per weight (about 3 GB on a "
        "65B model) at no measurable quality cost. Ignored for 8 bits.",
    )
    compute_dtype: str = opt(
        "auto",
        "Number format the 4-bit weights are expanded to for each matrix multiply. auto follows the run's "
        "precision: bf16 on GPUs and CPUs that do bf16 in hardware, else fp32 (on other CPUs bf16 is "
        "emulated and very slow).",
        choices=["auto", "fp32", "bf16", "fp16"],
    )
    storage_dtype: str = opt(
        "uint8",
        "How the packed 4-bit weights are stored. uint8 is bitsandbytes' own packing (one process, or ddp). "
        "fsdp and deepspeed3 split every weight among the GPUs by its number format, so there the 4-bit weights "
        "must be packed as the rest of the base is kept: fp32 (the base loads in fp32). Ignored for 8 bits.",
        choices=["uint8", "fp32"],
    )
    paged_optimizer: bool = opt(
        False,
        "Use bitsandbytes' paged 8-bit AdamW: optimiser state takes a quarter of the memory and moves to CPU "
        "memory when the GPU runs short, instead of crashing on a memory spike. CUDA GPUs only.",
    )


SECTIONS = {"quant": QuantParams}

_DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def bitsandbytes_problem(device: str) -> str | None:
    """Why bitsandbytes cannot quantise on `device`, or None when it can."""
    try:
        import bitsandbytes
        from bitsandbytes import cextension
    except Exception as err:  # not installed, or its import fails on this platform
        return f"bitsandbytes cannot be imported here ({type(err).__name__}: {err})"
    kind = device.split(":", 1)[0]
    if kind not in getattr(bitsandbytes, "supported_torch_devices", set()):
        return f"bitsandbytes {bitsandbytes.__version__} has no backend for device '{kind}'"
    # On a GPU bitsandbytes needs its native library; a failed load leaves a stand-in that raises on use.
    if kind == "cuda" and isinstance(cextension.lib, cextension.ErrorHandlerMockBNBNativeLibrary):
        return "bitsandbytes could not load its CUDA library (see `python -m bitsandbytes`)"
    return None


def compute_dtype(spec, device: str) -> str:
    """The dtype name ("fp32", "bf16", "fp16") the quantised matmuls compute in."""
    from core.runtime.device import pick_precision

    chosen = spec.quant.compute_dtype
    if chosen == "auto":  # the run's own precision, itself auto -> bf16 only where hardware does it
        chosen = pick_precision(spec.runtime.precision, device)
    return chosen


def check(spec) -> list[tuple[str, str]]:
    problems = base(NAME).check(spec) + lora.quantised_problems(spec)
    if spec.quant.paged_optimizer and spec.lora.fa:
        # The paged optimiser keeps only the parameter groups; LoRA-FA's projection of B's gradient would be lost.
        problems.append(("quant.paged_optimizer", "LoRA-FA (lora.fa) brings its own optimiser, which cannot be paged; "
                                                  "turn one of them off"))
    return problems + strategy_problems(spec)


def strategy_problems(spec) -> list[tuple[str, str]]:
    """What FSDP and DeepSpeed need of a quantised base: sharding splits weights by number format, so 4-bit
    weights must be stored as the rest of the base is, and LLM.int8 weights cannot be split at all."""
    from core.runtime.layout import sharded, splits_optimiser

    q, strategy = spec.quant, spec.runtime.strategy
    problems = []
    if sharded(spec) and q.bits == 8:
        problems.append(("quant.bits", f"8-bit weights cannot be split among processes; with runtime.strategy {strategy} "
                                       "use 4 bits with quant.storage_dtype fp32, or ddp"))
    elif sharded(spec) and q.storage_dtype != "fp32":
        problems.append(("quant.storage_dtype", f"runtime.strategy {strategy} splits every weight among the GPUs, which "
                                                "needs the 4-bit weights stored as the rest of the base is: set "
                                                "quant.storage_dtype to fp32"))
    if splits_optimiser(spec) and q.paged_optimizer:
        problems.append(("quant.paged_optimizer", f"the paged optimiser is built over whole matrices; runtime.strategy "
                                                  f"{strategy} hands the optimiser split ones. Turn it off, or use ddp"))
    return problems


def check_launch(spec) -> list[tuple[str, str]]:
    from core.runtime.device import pick_device

    problems = base(NAME).check_launch(spec)
    device = pick_device(spec.runtime.device)
    why = bitsandbytes_problem(device)
    if why:
        problems.append(("quant.bits", f"{spec.quant.bits}-bit loading is not possible on {device}: {why}"))
    if spec.quant.paged_optimizer and device != "cuda":
        problems.append(("quant.paged_optimizer", f"paged optimisers need a CUDA GPU; this run uses {device}. Turn it off"))
    return problems


def quantization_config(spec, device: str):
    import torch
    from transformers import BitsAndBytesConfig

    q = spec.quant
    if q.bits == 8:
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=q.quant_type,
        bnb_4bit_use_double_quant=q.double_quant,
        bnb_4bit_compute_dtype=getattr(torch, _DTYPES[compute_dtype(spec, device)]),
        bnb_4bit_quant_storage=torch.uint8 if q.storage_dtype == "uint8" else getattr(torch, _DTYPES[q.storage_dtype]),
    )


def load_kwargs(spec, device: str) -> dict:
    return {"quantization_config": quantization_config(spec, device)}


def prepare_model(spec, model):
    from collections import Counter

    from peft import prepare_model_for_kbit_training

    kinds = Counter(type(m).__name__ for m in model.modules() if type(m).__name__ in ("Linear4bit", "Linear8bitLt"))
    # In train.log, so a run shows what its base really is (and tests can check it in the trainer process).
    print(f"[workbench] quantised base: {dict(kinds)}", flush=True)
    # Freezes the base, upcasts its remaining 16-bit parts (norms, embeddings) to fp32 for stable training,
    # and turns gradient checkpointing on only when the job asks (PEFT's default would always turn it on).
    return prepare_model_for_kbit_training(model, use_gradient_checkpointing=spec.train.gradient_checkpointing == "on")


def after_wrap(spec, peft_model) -> None:
    from collections import Counter

    import torch

    from core.runtime.device import pick_device

    # TRL's SFTTrainer casts a quantised model's trainable adapter weights to bf16 (the QLoRA paper's
    # recipe). Where we compute in something else that hurts: a CPU without native bf16 emulates it
    # (measured on the bundled model, batch 8 x 128, this AVX2 CPU: 7-9 s per forward+backward with fp32
    # adapters, 15-16 s with bf16 ones), and fp16 mixed precision refuses to unscale bf16 gradients.
    # So outside bf16 compute the adapter goes back to fp32.
    if compute_dtype(spec, pick_device(spec.runtime.device)) != "bf16":
        for param in peft_model.parameters():
            if param.dtype == torch.bfloat16:
                param.data = param.data.to(torch.float32)
    import bitsandbytes as bnb

    quantised = (bnb.nn.Linear4bit, bnb.nn.Linear8bitLt)
    over = Counter(type(m.base_layer).__name__ for m in peft_model.modules()
                   if isinstance(getattr(m, "base_layer", None), quantised))
    if over or any(isinstance(m, quantised) for m in peft_model.modules()):
        # Not for the parameter count's meta model (nothing is quantised there), which would say {} in train.log.
        print(f"[workbench] adapters over quantised layers: {dict(over)}", flush=True)
    base(NAME).after_wrap(spec, peft_model)  # LoRA's own options (e.g. frozen A) apply to QLoRA too


def optimizer(spec, peft_model, args):
    """LoRA's optimiser if it builds one (e.g. per-matrix learning rates), made paged 8-bit when asked."""
    built = base(NAME).optimizer(spec, peft_model, args)
    if not spec.quant.paged_optimizer:
        return built
    import bitsandbytes as bnb

    if built is not None:  # keep LoRA's parameter groups and their learning rates, change only the state
        groups = [{"params": g["params"], "lr": g["lr"], "weight_decay": g.get("weight_decay", args.weight_decay)}
                  for g in built.param_groups]
    else:
        groups = [{"params": [p for p in peft_model.parameters() if p.requires_grad]}]
    return bnb.optim.PagedAdamW8bit(groups, lr=args.learning_rate, betas=(args.adam_beta1, args.adam_beta2),
                                    eps=args.adam_epsilon, weight_decay=args.weight_decay)
