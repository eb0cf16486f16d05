"""The job spec: one typed schema for everything a training job needs.

Each field carries its own bounds, choices and help text in `field` metadata,
so the YAML loader, the CLI `--set` overrides, validation and the UI form all
read the same declaration. Method parameters live beside their method in
`core/methods/<name>.py`; the root spec gathers them from the method registry.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

BUNDLED_MODEL = "SmolLM2-135M-Instruct"

# Upper bounds shared by several counts. A million optimiser steps is far beyond any fine-tuning run (at
# ten steps a second it is more than a day); a bigger number is a typo (1e21) and would overflow a schedule.
MAX_STEPS = 1_000_000
MAX_SAMPLES = 10_000_000  # as many rows as a dataset may hold (core/data/limits.py)
MAX_SEED = 2**32 - 1  # numpy's seeds stop here; torch and Python accept it too


def opt(default, help: str, *, lo=None, hi=None, choices=None, multi=False, kind=None):
    """Declare a spec field with its default, plain-words help and allowed values.

    `lo`/`hi` bound numbers (inclusive), `choices` limits strings (or each list
    item when `multi`), `kind` marks fields the UI draws specially (e.g. "path").
    """
    meta = {"help": help, "lo": lo, "hi": hi, "choices": choices, "multi": multi, "kind": kind}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class ModelSection:
    path: str = opt(
        BUNDLED_MODEL,
        "The base model: the bundled SmolLM2-135M-Instruct, a local Hugging Face folder, "
        "or a hub id (needs a network the first time).",
        kind="model",
    )
    trust_remote_code: bool = opt(
        False,
        "Run Python code shipped in the model folder, for models whose config.json names code of their own "
        "(auto_map) that transformers does not include. WARNING: that code runs with your rights, like any "
        "program you install; turn this on only for a model whose code you have read or whose publisher you "
        "trust. Off, such a model is refused before launch.",
    )
    init_adapter: str = opt(
        "",
        "Start from this adapter instead of a new one: a finished run's adapter/ folder, to train it further "
        "(e.g. more epochs) as a new run with its own learning-rate schedule. Empty = a fresh adapter. It must "
        "have been trained with the same method and base model.",
        kind="path",
    )


@dataclass
class DataSection:
    dataset: str = opt(
        "identity",
        "A dataset from the registry, a path to a json/jsonl/csv/parquet/txt file, or a hub id (needs a network). "
        "Several, separated by commas, are mixed together.",
        kind="dataset",
    )
    registry: str = opt("", "Dataset registry file; empty uses the bundled data/dataset_info.json.", kind="path")
    name: str = opt("Ferret", "Fills {{name}} in identity-style datasets: the name the model learns to give itself.")
    author: str = opt("LoRA Workbench", "Fills {{author}} in identity-style datasets.")
    max_samples: int = opt(0, "Use at most this many samples (0 = all), picked at random with the training seed. "
                           "Handy for a quick trial run.", lo=0, hi=MAX_SAMPLES)
    max_length: int = opt(
        512,
        "Longest sequence in tokens; longer samples are cut. Memory and time grow with it.",
        lo=16,
        hi=131072,
    )
    train_on_prompt: bool = opt(
        False,
        "Also learn from the user's prompts. Off (the usual choice) trains only on the assistant's answers.",
    )
    eval_split: float = opt(
        0.0,
        "Share of samples held out to measure eval loss (0 = none). Eval loss rising while training loss falls "
        "means the model is memorising rather than learning.",
        lo=0.0,
        hi=0.5,
    )
    eval_steps: int = opt(0, "Measure eval loss every this many steps (0 = about ten times per run).", lo=0, hi=MAX_STEPS)
    batching: str = opt(
        "padded",
        "How samples share a batch. padded: each row padded to the longest in its batch (simple). "
        "padding_free: rows laid end to end with no padding tokens, so no compute is wasted on padding. "
        "packed: several short samples packed into rows of max length; fastest on many short samples, "
        "each sample still sees only itself.",
        choices=["padded", "padding_free", "packed"],
    )


@dataclass
class TrainSection:
    epochs: float = opt(
        3.0,
        "Passes over the dataset. Several epochs over a small instruction set can overfit and make answers worse.",
        lo=0.01,
        hi=1000,
    )
    max_steps: int = opt(0, "Stop after this many optimiser steps (0 = decide from epochs).", lo=0,
                         hi=MAX_STEPS)
    learning_rate: float = opt(
        2e-4,
        "Step size. LoRA tolerates higher rates than full fine-tuning (1e-4 to 1e-3); too high diverges.",
        lo=1e-8,
        hi=1.0,
    )
    batch_size: int = opt(4, "Samples per forward pass. Larger is faster per sample but needs more memory.", lo=1, hi=4096)
    grad_accum: int = opt(
        1,
        "Forward passes summed before each optimiser step. Effective batch = batch size x this, at no extra memory.",
        lo=1,
        hi=4096,
    )
    weight_decay: float = opt(0.0, "Pulls weights towards zero; a little (0.01) can curb overfitting.", lo=0.0, hi=1.0)
    warmup_steps: int = opt(0, "Steps over which the learning rate ramps up from zero; steadies early training.", lo=0,
                            hi=MAX_STEPS)
    lr_scheduler: str = opt(
        "cosine",
        "How the learning rate falls over the run.",
        choices=["cosine", "linear", "constant", "constant_with_warmup"],
    )
    max_grad_norm: float = opt(1.0, "Clip gradients to this norm (0 = no clipping); guards against spikes.", lo=0.0,
                                hi=1e6)
    group_by_length: bool = opt(
        False,
        "Batch samples of similar length together: less padding, so faster on uneven data; the order is a little less random.",
    )
    gradient_checkpointing: str = opt(
        "auto",
        "Recompute activations during the backward pass instead of storing them: about a third less peak memory "
        "for about 40% more time (measured on the bundled model); worth it for long sequences or big models. "
        "auto turns it on only when the memory estimate without it exceeds 90% of the device's free memory.",
        choices=["auto", "on", "off"],
    )
    logging_steps: int = opt(1, "Write a metrics point every this many steps.", lo=1, hi=MAX_STEPS)
    save_steps: int = opt(
        50,
        "Save a resumable checkpoint every this many steps (0 = none; Stop still saves one), so a run that is "
        "killed, crashes or loses its machine resumes from there. Each checkpoint holds the adapter, the "
        "optimiser's two running averages for every trained weight and the random state: about three times the "
        "adapter, e.g. 62 MB for LoRA r16 on every linear layer of the bundled model.",
        lo=0,
        hi=MAX_STEPS,
    )
    keep_checkpoints: int = opt(
        2,
        "Keep only the newest this many checkpoints; older ones are deleted as new ones are saved, which bounds "
        "the disk a run uses (see the checkpoint interval for the size of each).",
        lo=1,
        hi=1000,
    )
    seed: int = opt(42, "Random seed for shuffling and adapter initialisation; same seed, same run.", lo=0, hi=MAX_SEED)


@dataclass
class RuntimeSection:
    device: str = opt(
        "auto",
        "Where to train: auto (every GPU there is, else the CPU), cpu, cuda (every GPU), or GPU ids separated by "
        "commas (0,1) to use only those. The list offers what this machine has.",
        kind="device",
    )
    precision: str = opt(
        "auto",
        "Number format for compute. bf16 halves activation memory and is faster where the hardware has it; "
        "auto picks bf16 on GPUs and CPUs with native bf16 (on other CPUs it is emulated and very slow), else fp32.",
        choices=["auto", "bf16", "fp16", "fp32"],
    )
    threads: int = opt(0, "CPU threads per training process (0 = this machine's cores shared evenly among its "
                          "processes).", lo=0, hi=1024)
    lean_loss: bool = opt(
        True,
        "Compute the loss only at trained positions, in 32 MB chunks, instead of scoring every position against "
        "the whole vocabulary (batch x length x 49,152 numbers for the bundled model, plus their gradient). "
        "Same loss and gradients (tested to 1e-5). Measured on the bundled model, batch 8: the step took 35% "
        "less CPU time. Off uses TRL's own loss.",
    )
    shared_prefix: bool = opt(
        True,
        "When every sample of a batch starts with the same tokens (a chat template's default system prompt), "
        "compute them once per batch instead of once per sample. Same loss and gradients (tested to 1e-5). "
        "Measured on the bundled model's identity data (24 of 52 tokens shared), batch 8: 30% less CPU time per "
        "step. Used only on padded batches without gradient checkpointing.",
    )
    fused_lora: bool = opt(
        True,
        "Compute each plain LoRA layer (frozen linear base, no DoRA) in one step that adds the low-rank product "
        "into the base output in place, instead of PEFT's separate product, scaling and sum, each a new tensor "
        "the size of the layer's output. Same loss and gradients (tested to 1e-5). Measured on the bundled "
        "model, batch 8, fp32 on a 2-core CPU: steps 10-15% shorter. Not used with FSDP or ZeRO-3 (sharded weights).",
    )
    processes: int = opt(
        1,
        "Training processes on this machine. On GPUs, one per GPU. On a CPU the cores are shared among them, "
        "so more processes add no compute there: it shows how the run splits, it does not speed it up.",
        lo=1,
        hi=1024,
    )
    strategy: str = opt(
        "single",
        "How several processes share the work. single: one process. ddp: each process holds the whole model "
        "and trains on its share of every batch, gradients averaged: the fastest while the model fits one "
        "device, and the only one that runs on CPUs. fsdp: weights, gradients and optimiser state are split "
        "across the GPUs (full shard) and parked in CPU memory: for models too big for one GPU, at the cost of "
        "much more traffic. deepspeed2: DeepSpeed ZeRO-2 splits optimiser state and gradients. deepspeed3: "
        "ZeRO-3 splits the weights too and offloads them to CPU memory: the biggest models, the slowest steps. "
        "fsdp and deepspeed need CUDA GPUs; deepspeed needs the deepspeed package.",
        choices=["single", "ddp", "fsdp", "deepspeed2", "deepspeed3"],
    )
    nodes: int = opt(
        1,
        "Machines that train this job together. Each runs the same job with its own node rank; the Train tab "
        "and `app.py train --print-node-command` show the command for the others.",
        lo=1,
        hi=1024,
    )
    node_rank: int = opt(
        0,
        "This machine's number among the nodes. 0 is the main node: it keeps the run (status, metrics, "
        "adapter); the others only train.",
        lo=0,
        hi=1023,
    )
    main_address: str = opt("127.0.0.1", "Address at which the other nodes reach the main node (several machines only).")
    main_port: int = opt(
        29500,
        "Port on the main node that the other nodes connect to (several machines only; on one machine a free "
        "port is picked).",
        lo=1,
        hi=65535,
    )


def spec_fields(section_cls) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(section_cls) if f.metadata]


def fixed_sections() -> dict[str, type]:
    """The sections every job has, whatever its method."""
    return {"model": ModelSection, "data": DataSection, "train": TrainSection, "runtime": RuntimeSection}


def section_types() -> dict[str, type]:
    """Every section of the spec, in form and file order: model and data, each method's, train and runtime."""
    from core.methods import METHODS

    fixed = fixed_sections()
    sections: dict[str, type] = {"model": fixed["model"], "data": fixed["data"]}
    for method in METHODS.values():
        sections.update(method.SECTIONS)  # the registry refused one name declared by two dataclasses
    sections["train"] = fixed["train"]
    sections["runtime"] = fixed["runtime"]
    return sections


def used_sections(method: str) -> list[str]:
    """The sections a job of `method` reads, in file order: the fixed ones and the method's (with its base's)."""
    from core.methods import METHODS

    used = set(fixed_sections()) | set(METHODS[method].SECTIONS)
    return [name for name in section_types() if name in used]


def method_choices() -> list[str]:
    from core.methods import METHODS

    return list(METHODS)


@dataclass
class JobSpec:
    """A whole training job. `sections` holds one dataclass instance per section of every method, so a
    form can switch methods and keep values; only the picked method's sections reach job.yaml.
    `notes` are what parsing ignored on purpose (e.g. another method's section in an old job.yaml)."""

    method: str = "lora"
    sections: dict[str, Any] = field(default_factory=lambda: {k: cls() for k, cls in section_types().items()})
    notes: list[str] = field(default_factory=list, compare=False)

    def __getattr__(self, name: str):
        # Lets code read spec.lora.r / spec.train.epochs without knowing which sections exist.
        sections = self.__dict__.get("sections")
        if sections is not None and name in sections:
            return sections[name]
        raise AttributeError(name)

    def to_dict(self) -> dict[str, Any]:
        """The job as written to job.yaml: the method and the sections it reads, nothing else."""
        out: dict[str, Any] = {"method": self.method}
        for name in used_sections(self.method):
            out[name] = dataclasses.asdict(self.sections[name])
        return out

    def get(self, dotted: str):
        if dotted == "method":
            return self.method
        section, key = dotted.split(".", 1)
        return getattr(self.sections[section], key)
