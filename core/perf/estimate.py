"""Peak memory and step time of a job, predicted from the model's config.json before anything loads.

The model is built on the meta device (shapes only; core/models/params.py), so a 70B config is
estimated in seconds on a laptop. Peak memory is the sum of named parts, each from a formula:

  weights       base parameters in their stored format: fp32 as loaded, or 4/8-bit linears plus their
                quantisation constants (bitsandbytes: one fp32 absmax per 64 weights for NF4, or an 8-bit
                one plus an fp32 one per 256 blocks with double quantisation; one fp32 scale per row at 8-bit)
  adapter       the method's added parameters (fp32)
  gradients     one value per trainable parameter (fp32)
  optimizer     AdamW: two fp32 moments; 8-bit (and paged) AdamW: two 8-bit moments plus block scales;
                SGD: none; LoRA-FA: AdamW on B only (A is frozen, so it is not counted as trainable)
  activations   what autograd keeps per token and layer for the backward (below), or with checkpointing
                only each layer's input plus one layer recomputed
  logits        the loss buffers: with the lean loss one 32 MB chunk of logits and its softmax plus the
                hidden-state gradient; TRL's own loss, tiles over every position of the batch
  overhead      the process before the model: Python, torch, transformers, TRL, PEFT, datasets (measured
                RSS after those imports), plus the allocator's slack; on CUDA only the allocator's slack,
                since peak allocated memory is what is measured there

Activations per token per decoder layer, in elements of the compute dtype (a Llama-style block with a
frozen base, counted from what autograd saves): the residual input and the normalised input of both
norms (4 d), the rotated query and key, the value and the attention output and the output projection's
input (3 d + 2 kv, of which one d is not held at the peak: calibrated), the MLP's gate, up, activated
gate and product (4 m), each adapter's rank-r inner value, and for DoRA two output-sized tensors of every
adapted layer (its base output and its scaled update). The measured peaks of the bundled model
(tests/e2e/test_estimate_e2e.py: LoRA, QLoRA and DoRA, batch 1 and 8, with and without checkpointing)
fixed the calibration and check it.

Time per step: FLOPs per token (forward 2 per frozen weight, backward 2 more for the input gradient,
4 more for trained weights' own gradient, the attention products, one more forward with checkpointing)
divided by the device's measured matmul peak (core/perf/peak.py) times a sustained share of it.
"""
from __future__ import annotations

from dataclasses import dataclass, field

# RSS of the trainer process after its imports, before the model loads (Python 3.11, torch 2.13 CPU,
# transformers 5.24, TRL 1.16, PEFT 0.21, datasets): 433 MiB measured without bitsandbytes, which only
# quantised jobs load (477 MiB with it); plus about 10% allocator slack over everything else.
CPU_PROCESS_BASE = 433 * 2**20
BITSANDBYTES_IMPORT = 44 * 2**20
ALLOCATOR_SLACK = 0.10
CUDA_CONTEXT_SLACK = 64 * 2**20
# The share of the matmul peak a training step sustains (small matmuls, elementwise work, the optimiser):
# measured 0.45-0.55 for the bundled model on a 2-core AVX2 CPU; used for the time estimate only.
SUSTAINED_SHARE = 0.5

OPTIMIZERS = ("adamw", "adamw_8bit", "paged_adamw_8bit", "sgd", "lorafa")
BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}


@dataclass
class ModelShape:
    layers: int
    hidden: int
    kv_dim: int
    heads: int
    intermediate: int
    vocab: int
    base_params: int  # tied weights once
    linear_params: int  # parameters in the decoder's linear layers (what 4/8-bit quantisation stores)


@dataclass
class Estimate:
    parts: dict[str, int]  # bytes, in the order shown
    step_flops: float
    tokens: int
    step_s: float | None = None
    peak_gflops: float | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.parts.values())


def shape_of(config, base_params: int, linear_params: int) -> ModelShape:
    """The figures the formulas need, from a config and the parameter counts of its meta-device model."""
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    heads = text.num_attention_heads
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // heads
    kv_heads = getattr(text, "num_key_value_heads", None) or heads
    return ModelShape(
        layers=text.num_hidden_layers, hidden=text.hidden_size, kv_dim=kv_heads * head_dim, heads=heads,
        intermediate=getattr(text, "intermediate_size", None) or 4 * text.hidden_size, vocab=text.vocab_size,
        base_params=base_params, linear_params=linear_params,
    )


def weight_bytes(shape: ModelShape, bits: int | None, double_quant: bool = True, device: str = "cuda") -> int:
    """Base weights: fp32 as loaded, or the decoder's linears at 4/8 bits with their constants (the
    embeddings, norms and output layer stay fp32). On a CPU the fp32 checkpoint read in to be quantised
    stays mapped in the process (measured on the bundled model: QLoRA's peak RSS is LoRA's plus the
    4-bit copies), so there the quantised linears come on top of the fp32 weights."""
    if not bits:
        return 4 * shape.base_params
    if device == "cpu":
        return 4 * shape.base_params + weight_bytes(shape, bits, double_quant) - 4 * (shape.base_params - shape.linear_params)
    rest = 4 * (shape.base_params - shape.linear_params)
    n = shape.linear_params
    if bits == 4:
        constants = (n / 64 + 4 * n / (64 * 256)) if double_quant else 4 * n / 64
        return int(rest + n / 2 + constants)
    rows = shape.layers * (4 * shape.hidden + 2 * shape.kv_dim + 2 * shape.intermediate)  # outputs of the linears
    return int(rest + n + 4 * rows)


def optimizer_bytes(trainable: int, optimizer: str) -> int:
    if optimizer in ("adamw", "lorafa"):
        return 8 * trainable
    if optimizer in ("adamw_8bit", "paged_adamw_8bit"):
        return int(2 * trainable + 2 * 4 * trainable / 256)  # two uint8 moments, an fp32 scale per 256 values
    if optimizer == "sgd":
        return 0
    raise ValueError(f"unknown optimizer {optimizer!r}; known: {', '.join(OPTIMIZERS)}")


def activation_elements_per_token_layer(shape: ModelShape, ranks: int, dora_outputs: int) -> int:
    # 7 d + 2 kv + 4 m: the count below, calibrated on the bundled model's measured peaks (the count gave
    # 8 d; one hidden-sized tensor is shared or freed early). DoRA keeps two output-sized tensors per
    # adapted layer (its base output and its scaled update), measured likewise.
    return 7 * shape.hidden + 2 * shape.kv_dim + 4 * shape.intermediate + shape.heads + ranks + 2 * dora_outputs


def activation_bytes(shape: ModelShape, tokens: int, ranks: int, dora_outputs: int, checkpointing: bool,
                     dtype_bytes: int) -> int:
    per_layer = activation_elements_per_token_layer(shape, ranks, dora_outputs) * tokens * dtype_bytes
    if checkpointing:
        # Each layer's input (fp32 residual stream) is kept; one layer at a time is recomputed in full.
        return shape.layers * shape.hidden * tokens * 4 + per_layer
    return shape.layers * per_layer


def loss_bytes(shape: ModelShape, tokens: int, label_tokens: int, lean: bool) -> int:
    if lean:
        from core.training.head_loss import chunk_rows

        rows = min(label_tokens, chunk_rows(shape.vocab))
        # a chunk's logits (turned into its softmax in place) and one temporary of the same size, plus the
        # gradient of the gathered hidden states
        return 2 * rows * shape.vocab * 4 + label_tokens * shape.hidden * 4
    # TRL's tiles: 32,768 vocabulary columns for every position, a handful of fp32 temporaries each
    return 5 * tokens * min(shape.vocab, 32768) * 4


def step_flops(shape: ModelShape, tokens: int, label_tokens: int, seq_len: int, trainable_linear: int,
               adapter_params: int, checkpointing: bool) -> float:
    frozen = shape.linear_params - trainable_linear
    attention = 4 * shape.layers * shape.hidden * seq_len  # scores and weighted sum per token, forward
    forward = tokens * (2 * shape.linear_params + 2 * adapter_params + attention) \
        + label_tokens * 2 * shape.vocab * shape.hidden
    backward = tokens * (2 * frozen + 4 * trainable_linear + 4 * adapter_params + 2 * attention) \
        + label_tokens * 2 * shape.vocab * shape.hidden
    return forward + backward + (forward if checkpointing else 0)


def estimate(shape: ModelShape, *, batch: int, seq_len: int, trainable: int, adapter_params: int,
             ranks_per_layer: int = 0, dora_outputs_per_layer: int = 0, bits: int | None = None,
             double_quant: bool = True, optimizer: str = "adamw", checkpointing: bool = False,
             precision: str = "fp32", device: str = "cpu", lean_loss: bool = True, label_share: float = 1.0,
             tokens: int | None = None, peak_gflops: float | None = None, flop_tokens: int | None = None) -> Estimate:
    """Peak memory by part and time per step for one micro-batch of `batch` rows of `seq_len` tokens.

    `tokens` overrides batch x seq_len where fewer are really computed (padding-free rows, a shared
    prefix); `label_share` is the share of positions that are trained (all of them by default);
    `flop_tokens`, when given, are the tokens an average step computes (the time), where `tokens` are
    the most a step holds (the memory)."""
    tokens = tokens if tokens is not None else batch * seq_len
    label_tokens = max(int(round(tokens * label_share)), 1)
    compute = BYTES[precision] if device == "cuda" or precision == "fp32" else 4  # CPU autocast keeps fp32 tensors too
    parts = {
        "weights": weight_bytes(shape, bits, double_quant, device),
        "adapter": 4 * adapter_params,
        "gradients": 4 * trainable,
        "optimizer": optimizer_bytes(trainable, optimizer),
        "activations": activation_bytes(shape, tokens, ranks_per_layer, dora_outputs_per_layer, checkpointing,
                                        compute),
        "logits": loss_bytes(shape, tokens, label_tokens, lean_loss),
    }
    if device == "cuda":
        parts["overhead"] = CUDA_CONTEXT_SLACK
    else:
        parts["overhead"] = CPU_PROCESS_BASE + (BITSANDBYTES_IMPORT if bits else 0) \
            + int(ALLOCATOR_SLACK * sum(parts.values()))
    work = flop_tokens or tokens
    flops = step_flops(shape, work, max(int(round(work * label_share)), 1), seq_len, 0, adapter_params, checkpointing)
    result = Estimate(parts=parts, step_flops=flops, tokens=tokens, peak_gflops=peak_gflops)
    if peak_gflops:
        result.step_s = flops / (peak_gflops * 1e9 * SUSTAINED_SHARE)
    return result


# --- a job spec in, an estimate out --------------------------------------------------------------------

def job_optimizer(spec) -> str:
    quant = spec.sections.get("quant") if spec.method in ("qlora", "qdora") else None
    if quant is not None and quant.paged_optimizer:
        return "paged_adamw_8bit"
    lora = spec.sections.get("lora") if "lora" in _method_sections(spec) else None
    return "lorafa" if lora is not None and lora.fa else "adamw"


def job_bits(spec) -> tuple[int | None, bool]:
    quant = spec.sections.get("quant") if spec.method in ("qlora", "qdora") else None
    if quant is None:
        return None, True
    return int(quant.bits), bool(quant.double_quant)


def _method_sections(spec) -> dict:
    from core.methods import METHODS

    return METHODS[spec.method].SECTIONS


def job_inputs(spec, counts: dict | None = None) -> tuple[dict, ModelShape]:
    """(parameter counts, model shape) for a spec: the meta-device work, done once per estimate."""
    from core.models.params import count_parameters

    counts = counts or count_parameters(spec)
    return counts, shape_of(counts["config"], counts["total"], counts["linear"])


def estimate_job(spec, counts: dict | None = None, *, device: str | None = None, precision: str | None = None,
                 checkpointing: bool | None = None, seq_len: int | None = None, tokens: int | None = None,
                 label_share: float = 1.0, peak_gflops: float | None = None, inputs=None,
                 flop_tokens: int | None = None) -> Estimate:
    """The estimate for a validated spec, from config.json alone. Without `seq_len` every row is taken
    to fill data.max_length (the worst case); the trainer passes the real longest row."""
    from core.runtime.device import pick_device, pick_precision

    device = device or pick_device(spec.runtime.device)
    precision = precision or pick_precision(spec.runtime.precision, device)
    counts, shape = inputs or job_inputs(spec, counts)
    layers = max(shape.layers, 1)
    ranks = _adapter_ranks(spec) * len(counts["adapted_shapes"]) // layers
    dora_out = sum(out for _, out in counts["adapted_shapes"]) // layers if spec.method in ("dora", "qdora") else 0
    bits, double_quant = job_bits(spec)
    if checkpointing is None:
        checkpointing = spec.train.gradient_checkpointing == "on"
    return estimate(
        shape, batch=spec.train.batch_size, seq_len=seq_len or spec.data.max_length, trainable=counts["trainable"],
        adapter_params=counts["all"] - counts["total"], ranks_per_layer=ranks, dora_outputs_per_layer=dora_out,
        bits=bits, double_quant=double_quant, optimizer=job_optimizer(spec), checkpointing=checkpointing,
        precision=precision, device=device, lean_loss=getattr(spec.runtime, "lean_loss", True),
        label_share=label_share, tokens=tokens, peak_gflops=peak_gflops, flop_tokens=flop_tokens,
    )


def _adapter_ranks(spec) -> int:
    """The inner width each adapter keeps per token (its rank); 0 for methods without one."""
    for name in _method_sections(spec):
        section = spec.sections.get(name)
        for key in ("r", "init_r"):
            if section is not None and hasattr(section, key):
                return int(getattr(section, key))
    return 0


def summary_lines(est: Estimate) -> list[str]:
    """The estimate as short lines: total, each part, and the step time when the peak is known."""
    mib = 2**20
    lines = [f"estimated peak memory: {est.total / mib:,.0f} MiB ({est.total / 1e9:.2f} GB)"]
    lines += [f"  {name:<12}{value / mib:>10,.1f} MiB" for name, value in est.parts.items()]
    flops = f"{est.step_flops / 1e9:,.1f} GFLOP per step ({est.tokens:,} tokens)"
    if est.step_s is not None:
        lines.append(f"estimated time per step: {est.step_s:.2f} s ({flops}, {est.peak_gflops:.0f} GFLOP/s matmul peak "
                     f"x {SUSTAINED_SHARE:.0%} sustained)")
    else:
        lines.append(f"work per step: {flops}")
    return lines


def job_estimate_with_time(spec, counts: dict | None = None) -> Estimate:
    """What `params` and the Train tab show: the worst case (every row at max length) in the job's settings,
    with the time per step from the device's cached matmul peak (measured once, in well under a second)."""
    from core.perf.peak import matmul_peak
    from core.runtime.device import pick_device, pick_precision

    device = pick_device(spec.runtime.device)
    precision = pick_precision(spec.runtime.precision, device)
    try:
        peak = matmul_peak(device, precision)
    except Exception:  # a device that cannot run the measurement still gets its memory estimate
        peak = None
    return estimate_job(spec, counts, device=device, precision=precision, peak_gflops=peak)


def exceeds_free_memory(spec, est: Estimate) -> tuple[int, int] | None:
    """(estimated total, free bytes) when the estimate does not fit in the device's free memory, else None."""
    from core.runtime.device import pick_device
    from core.training.levers import free_memory

    free = free_memory(pick_device(spec.runtime.device))
    return (est.total, free) if free is not None and est.total > free else None
