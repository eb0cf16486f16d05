"""Every option of every section each method reads is honoured, with an effect this test can see (on the PEFT
config, the wrapped model, the optimiser's parameter groups, the saved adapter or the metrics), or refused
before launch with the field named.

OPTIONS below holds, per option, the values tried and what must happen; the first test fails when a method
reads an option that has no entry, or when an entry leaves a choice (or either side of a switch) untried.
A method's own sections are tried with every method that reads them. The sections every job has (model,
data, train, runtime) reach the trainer the same way whatever the method, so they are tried once, with
LoRA: their effect is on the base the trainer loads, the rows it trains on and the Trainer's arguments.
Models are built the way the trainer builds them (load_kwargs, prepare_model, peft_config, after_wrap), in
this process and without training; one in-process optimiser step where only a step shows the effect; and
one real run through the trainer for LongLoRA with PiSSA and LoRA+.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import pytest
import torch
import yaml
from peft import PeftModel, get_peft_model
from peft.tuners.lora import LoraLayer
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from core.methods import METHODS, TrainPlan
from core.models.loading import load_base_model, load_tokenizer
from core.runs import runner
from core.runtime.accelerate_config import accelerate_config
from core.runtime.device import cpu_has_native_bf16, gpu_ids, pick_device
from core.runtime.hardware import cpu_cores
from core.runtime.layout import deepspeed_installed
from core.runtime.nodes import node_commands
from core.spec import SpecError, check_launch, spec_from_dict
from core.spec.schema import fixed_sections, spec_fields
from core.training.trainer import build_datasets, pick_runtime, planned_steps, training_args
from tests.helpers import free_port, tiny_job, wait_for_end

LR = 1e-2
TRAINER_ARGS = SimpleNamespace(learning_rate=LR, weight_decay=0.0, adam_beta1=0.9, adam_beta2=0.999, adam_epsilon=1e-8)
TINY_R, TINY_ALPHA, TINY_LAYERS = 4, 8.0, 2  # the tiny job's rank and alpha; the tiny Llama's layers
LEAVES = {"query": {"q_proj"}, "key": {"k_proj"}, "value": {"v_proj"}, "projection": {"o_proj"},
          "mlp": {"gate_proj", "up_proj", "down_proj"}, "head": {"lm_head"},
          "all-linear": {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # The tiny model gains nothing from threads, and on a shared 2-core machine two threads made LAPACK's
    # 64 x 64 SVD (PiSSA's) take 0.4 s instead of 1 ms.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class Job:
    """`method` on the tiny model with some sections set: refused, or built as the trainer builds it."""

    def __init__(self, model_dir, tmp_path, method: str):
        self.model_dir, self.tmp_path, self.method, self.hooks = model_dir, tmp_path, method, METHODS[method]

    def refusal(self, **sections) -> dict[str, str]:
        """The problems parsing and the launch checks find, by field ({} when the job could start)."""
        try:
            check_launch(spec_from_dict(tiny_job(self.model_dir, method=self.method, **sections)))
        except SpecError as err:
            return dict(err.problems)
        return {}

    def assert_refused(self, field: str, **sections) -> None:
        assert field in self.refusal(**sections), (self.method, sections, self.refusal(**sections))

    def parse(self, **sections):
        """The spec, after checking that nothing refuses the job."""
        assert self.refusal(**sections) == {}, (self.method, sections, self.refusal(**sections))
        return spec_from_dict(tiny_job(self.model_dir, method=self.method, **sections))

    def trainer_inputs(self, **sections):
        """What the trainer hands the Trainer for this job: its rows (train, eval) and its arguments."""
        spec = self.parse(**sections)
        train, held_out = build_datasets(spec, load_tokenizer(spec.model.path))
        device, precision = pick_runtime(spec)
        args = training_args(spec, self.tmp_path / "checkpoints", device, precision,
                             planned_steps(len(train), spec.train), held_out is not None)
        return SimpleNamespace(spec=spec, train=train, eval=held_out, args=args)

    def build(self, **sections):
        """(spec, wrapped model), after checking that nothing refuses the job."""
        spec = self.parse(**sections)
        torch.manual_seed(0)
        model = load_base_model(spec, "cpu", **self.hooks.load_kwargs(spec, "cpu"))
        model = self.hooks.prepare_model(spec, model)
        peft_model = get_peft_model(model, self.hooks.peft_config(spec, model, TrainPlan(spec.train.max_steps)))
        self.hooks.after_wrap(spec, peft_model)
        return spec, peft_model

    def optimizer(self, spec, model):
        """The method's optimiser, or the AdamW the Trainer would build when the method has none."""
        built = self.hooks.optimizer(spec, model, TRAINER_ARGS)
        return built or torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=LR)

    def step(self, spec, model):
        """One optimiser step on a short prompt; returns the optimiser."""
        optimizer = self.optimizer(spec, model)
        ids = self.prompt()
        model.train()
        model(input_ids=ids, labels=ids).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        return optimizer

    def prompt(self):
        tokenizer = AutoTokenizer.from_pretrained(self.model_dir)
        return tokenizer("Who are you? Tell me about yourself, please.", return_tensors="pt")["input_ids"]

    def original_base(self, spec):
        """The base as chat and export load it: no quantisation, no PiSSA residual."""
        return AutoModelForCausalLM.from_pretrained(self.model_dir, **self.hooks.inference_kwargs(spec)).eval()


def logits(model, ids):
    model.eval()
    with torch.no_grad():
        return model(input_ids=ids).logits


def lora_layers(model) -> list:
    return [m for m in model.modules() if isinstance(m, LoraLayer)]


def adapted_leaves(model) -> set[str]:
    return {name.rsplit(".", 1)[-1] for name, m in model.named_modules() if isinstance(m, LoraLayer)}


def trainable(model, part: str) -> list[torch.nn.Parameter]:
    return [p for n, p in model.named_parameters() if part in n and p.requires_grad]


def base_layers(model) -> list:
    return [m.base_layer for m in lora_layers(model) if hasattr(m, "base_layer")]


# ---------------------------------------------------------------- lora (LoRA, DoRA, QLoRA, QDoRA, LongLoRA)

DORA_LIKE = {"dora", "qdora"}  # a DoRA update: PiSSA and LoRA-FA refused
QUANTISED = {"qlora", "qdora"}  # a 4/8-bit base: PiSSA refused


def lora_r(job: Job, r):
    _, model = job.build(lora={"r": r})
    assert model.peft_config["default"].r == r
    assert {m.lora_A["default"].weight.shape[0] for m in lora_layers(model)} == {r}


def lora_alpha(job: Job, alpha):
    _, model = job.build(lora={"alpha": alpha})
    assert {m.scaling["default"] for m in lora_layers(model)} == {alpha / TINY_R}


def lora_dropout(job: Job, p):
    _, model = job.build(lora={"dropout": p})
    assert {m.lora_dropout["default"].p for m in lora_layers(model)} == {p}


def lora_targets(job: Job, toggles):
    if not toggles:
        return job.assert_refused("lora.targets", lora={"targets": toggles})
    if job.method == "longlora" and "head" in toggles:  # the tiny model's head is its (trained) embedding
        return job.assert_refused("lora.targets", lora={"targets": toggles})
    _, model = job.build(lora={"targets": toggles})
    assert adapted_leaves(model) == set().union(*(LEAVES[t] for t in toggles))


def lora_rslora(job: Job, on):
    _, model = job.build(lora={"rslora": on})
    assert {m.scaling["default"] for m in lora_layers(model)} == {TINY_ALPHA / (TINY_R ** 0.5 if on else TINY_R)}


def lora_init(job: Job, init):
    if init.startswith("pissa") and job.method in DORA_LIKE | QUANTISED:
        return job.assert_refused("lora.init", lora={"init": init})
    spec, model = job.build(lora={"init": init})
    assert model.peft_config["default"].init_lora_weights == {"default": True, "gaussian": "gaussian", "pissa": "pissa",
                                                              "pissa_fast": "pissa_niter_16"}[init]
    a = torch.cat([m.lora_A["default"].weight.flatten() for m in lora_layers(model)])
    b = torch.cat([m.lora_B["default"].weight.flatten() for m in lora_layers(model)])
    if init == "default":  # kaiming-uniform A (std about 1/sqrt(3 * fan_in) <= 0.07 here), zero B
        assert b.abs().max() == 0 and a.std() < 0.1
    elif init == "gaussian":  # normal A with std 1/r, zero B
        assert b.abs().max() == 0 and a.std().item() == pytest.approx(1 / TINY_R, rel=0.1)
    else:
        pissa_adapter_fits_the_original_base(job, spec, model)


def pissa_adapter_fits_the_original_base(job: Job, spec, model):
    """PiSSA starts A and B from the top singular directions (base = the residual), so the model starts as the
    base did; after a step, the saved (converted) adapter on the ORIGINAL base gives the trained model's logits."""
    ids = job.prompt()
    original = logits(job.original_base(spec), ids)
    assert min(m.lora_B["default"].weight.abs().max() for m in lora_layers(model)) > 0  # not LoRA's zero B
    assert torch.allclose(logits(model, ids), original, atol=1e-4)
    job.step(spec, model)
    trained = logits(model, ids)
    assert not torch.allclose(trained, original, atol=1e-3), "the step changed nothing, so the check proves nothing"
    folder = job.tmp_path / "adapter"
    job.hooks.save_adapter(spec, model, folder)
    assert json.loads((folder / "adapter_config.json").read_text())["r"] == 2 * TINY_R  # converted: A|A0, B|-B0
    saved = PeftModel.from_pretrained(job.original_base(spec), folder)
    assert torch.allclose(logits(saved, ids), trained, atol=1e-4), (logits(saved, ids) - trained).abs().max()


def lora_plus_ratio(job: Job, ratio):
    if ratio < 1:
        return job.assert_refused("lora.plus_ratio", lora={"plus_ratio": ratio})
    spec, model = job.build(lora={"plus_ratio": ratio})
    optimizer = job.optimizer(spec, model)
    rate = {id(p): group["lr"] for group in optimizer.param_groups for p in group["params"]}
    assert {rate[id(p)] for p in trainable(model, "lora_A")} == {LR}
    assert {rate[id(p)] for p in trainable(model, "lora_B")} == {LR * ratio}
    # The metrics: the rate callback reports B's rate from the optimiser the trainer steps.
    [callback] = [c for c in job.hooks.callbacks(spec, model, TrainPlan(4)) if hasattr(c, "metric_extras")]
    callback.on_optimizer_step(None, None, None, optimizer=optimizer)
    assert callback.metric_extras(None) == {"learning_rate_b": LR * ratio}


def lora_fa(job: Job, on):
    if on and job.method in DORA_LIKE:
        return job.assert_refused("lora.fa", lora={"fa": on})
    spec, model = job.build(lora={"fa": on})
    a = [p for n, p in model.named_parameters() if "lora_A" in n]
    assert all(p.requires_grad is not on for p in a)
    if on:
        a_before = [p.detach().clone() for p in a]
        b_before = [p.detach().clone() for p in trainable(model, "lora_B")]
        assert type(job.step(spec, model)).__name__ == "LoraFAOptimizer"
        assert all(torch.equal(p, q) for p, q in zip(a, a_before)), "an A moved"
        assert all(not torch.equal(p, q) for p, q in zip(trainable(model, "lora_B"), b_before)), "a B did not train"


# ---------------------------------------------------------------- quant (QLoRA, QDoRA)

def quant_bits(job: Job, bits):
    _, model = job.build(quant={"bits": bits})
    assert {type(layer).__name__ for layer in base_layers(model)} == {{4: "Linear4bit", 8: "Linear8bitLt"}[bits]}


def quant_quant_type(job: Job, kind):
    _, model = job.build(quant={"quant_type": kind})
    assert {layer.weight.quant_state.quant_type for layer in base_layers(model)} == {kind}


def quant_double_quant(job: Job, on):
    _, model = job.build(quant={"double_quant": on})
    assert {layer.weight.quant_state.nested for layer in base_layers(model)} == {on}


def quant_compute_dtype(job: Job, name):
    _, model = job.build(quant={"compute_dtype": name})
    native = "bf16" if cpu_has_native_bf16() else "fp32"  # auto follows the run's precision (auto: fp32 here)
    want = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[native if name == "auto" else name]
    assert {layer.compute_dtype for layer in base_layers(model)} == {want}


def quant_storage_dtype(job: Job, name):
    _, model = job.build(quant={"storage_dtype": name})
    assert {layer.weight.dtype for layer in base_layers(model)} == {{"uint8": torch.uint8, "fp32": torch.float32}[name]}
    if name == "uint8":  # FSDP and ZeRO-3 shard by dtype: the packed weights must be stored as the rest of the base
        job.assert_refused("quant.storage_dtype", quant={"storage_dtype": name}, runtime={"strategy": "deepspeed3"})


def quant_paged_optimizer(job: Job, on):
    if on and not torch.cuda.is_available():
        return job.assert_refused("quant.paged_optimizer", quant={"paged_optimizer": on})
    spec, model = job.build(quant={"paged_optimizer": on})
    built = job.hooks.optimizer(spec, model, TRAINER_ARGS)
    assert (type(built).__name__ == "PagedAdamW8bit") if on else built is None


# ---------------------------------------------------------------- longlora

def longlora_target_context(job: Job, target):
    if target < 256:  # data.max_length 256 would run past it
        return job.assert_refused("longlora.target_context", data={"max_length": 256}, longlora={"target_context": target})
    _, model = job.build(longlora={"target_context": target})
    assert model.config.rope_parameters["factor"] == target / 512 and model.config.max_position_embeddings == target


def longlora_rope_scaling(job: Job, kind):
    _, model = job.build(longlora={"rope_scaling": kind})
    assert model.config.rope_parameters["rope_type"] == kind


def longlora_group_size_ratio(job: Job, ratio):
    if abs(1 / ratio - round(1 / ratio)) > 1e-6:
        return job.assert_refused("longlora.group_size_ratio", longlora={"group_size_ratio": ratio})
    spec, model = job.build(longlora={"group_size_ratio": ratio})
    assert model.config.s2_attention_groups == round(1 / ratio)
    assert model.config._attn_implementation == "s2_attn"


def longlora_train_embeddings(job: Job, on):
    _, model = job.build(longlora={"train_embeddings": on})
    assert bool(trainable(model, "embed_tokens")) is on


def longlora_train_norms(job: Job, on):
    _, model = job.build(longlora={"train_norms": on})
    assert bool(trainable(model, "layernorm")) is on


# ---------------------------------------------------------------- adalora

ADAPTED = TINY_LAYERS * 7  # all-linear on the tiny Llama


def adalora_init_r(job: Job, r):
    _, model = job.build(adalora={"init_r": r, "target_r": 1})
    assert {m.lora_E["default"].shape[0] for m in model.modules() if hasattr(m, "lora_E")} == {r}


def adalora_target_r(job: Job, r):
    if r > 12:  # above the default init_r
        return job.assert_refused("adalora.target_r", adalora={"target_r": r})
    _, model = job.build(adalora={"target_r": r})
    assert model.base_model.rankallocator.target_bgt == r * ADAPTED


def adalora_tinit(job: Job, tinit):
    if tinit >= 4:  # train.max_steps 4: no step left to prune in
        return job.assert_refused("adalora.tinit", adalora={"tinit": tinit})
    _, model = job.build(adalora={"tinit": tinit})
    schedule = model.base_model.rankallocator.budget_schedule
    assert [schedule(step)[1] for step in (1, 2, 3)] == [step > tinit for step in (1, 2, 3)]  # no pruning before


def adalora_tfinal(job: Job, tfinal):
    _, model = job.build(adalora={"tfinal": tfinal})
    _, without = job.build()
    end = 4 - tfinal  # train.max_steps 4: pruning reaches the final budget here, which then stays fixed
    allocation = model.base_model.rankallocator
    assert allocation.budget_schedule(end)[0] == allocation.target_bgt
    assert without.base_model.rankallocator.budget_schedule(end)[0] > allocation.target_bgt
    assert allocation.budget_schedule(end + 1) == (allocation.target_bgt, True)


def adalora_delta_t(job: Job, delta):
    _, model = job.build(adalora={"delta_t": delta})
    assert [model.base_model.rankallocator.budget_schedule(s)[1] for s in (1, 2, 3)] == [s % delta == 0 for s in (1, 2, 3)]


def adalora_beta(name: str):
    def check(job: Job, beta):
        _, model = job.build(adalora={name: beta})
        assert getattr(model.base_model.rankallocator, name) == beta

    return check


def adalora_orth_weight(job: Job, weight):
    spec, model = job.build(adalora={"orth_weight": weight})
    [allocation] = job.hooks.callbacks(spec, model, TrainPlan(4))
    allocation.on_step_begin(None, None, None)  # adds the penalty's gradient, as in each trainer step
    grads = [p.grad for n, p in model.named_parameters() if "lora_A" in n]
    assert all(g is not None and g.abs().sum() > 0 for g in grads) if weight else all(g is None for g in grads)


def adalora_alpha(job: Job, alpha):
    _, model = job.build(adalora={"alpha": alpha})
    assert {m.scaling["default"] for m in model.modules() if hasattr(m, "lora_E")} == {alpha}


def adalora_dropout(job: Job, p):
    _, model = job.build(adalora={"dropout": p})
    assert {m.lora_dropout["default"].p for m in model.modules() if hasattr(m, "lora_E")} == {p}


def adalora_targets(job: Job, toggles):
    if not toggles:
        return job.assert_refused("adalora.targets", adalora={"targets": toggles})
    _, model = job.build(adalora={"targets": toggles})
    leaves = {n.rsplit(".", 1)[-1] for n, m in model.named_modules() if hasattr(m, "lora_E")}
    assert leaves == set().union(*(LEAVES[t] for t in toggles))


# ---------------------------------------------------------------- vera

def vera_r(job: Job, r):
    _, model = job.build(vera={"r": r})
    assert model.base_model.vera_A["default"].shape[0] == r


def vera_d_initial(job: Job, d):
    _, model = job.build(vera={"d_initial": d})
    values = torch.cat([p.flatten() for n, p in model.named_parameters() if "vera_lambda_d" in n])
    assert torch.allclose(values, torch.full_like(values, d))


def vera_projection_seed(job: Job, seed):
    _, model = job.build(vera={"projection_seed": seed})
    _, same = job.build(vera={"projection_seed": seed})
    _, other = job.build(vera={"projection_seed": seed + 1})
    shared = model.base_model.vera_A["default"]
    assert torch.equal(shared, same.base_model.vera_A["default"])
    assert not torch.equal(shared, other.base_model.vera_A["default"])


def vera_save_projection(job: Job, on):
    spec, model = job.build(vera={"save_projection": on})
    job.hooks.save_adapter(spec, model, job.tmp_path / "adapter")
    assert ("base_model.vera_A" in load_file(job.tmp_path / "adapter" / "adapter_model.safetensors")) is on


def vera_dropout(job: Job, p):
    _, model = job.build(vera={"dropout": p})
    assert {m.vera_dropout["default"].p for m in model.modules() if hasattr(m, "vera_dropout")} == {p}


def vera_targets(job: Job, toggles):
    if not toggles or "head" in toggles:
        return job.assert_refused("vera.targets", vera={"targets": toggles})
    _, model = job.build(vera={"targets": toggles})
    leaves = {n.rsplit(".", 1)[-1] for n, m in model.named_modules() if hasattr(m, "vera_lambda_b")}
    assert leaves == set().union(*(LEAVES[t] for t in toggles))


# ---------------------------------------------------------------- model, data, train, runtime (every method)

MISSING = "/nonexistent/path"  # a value that parses but names nothing on this machine


def model_trust_remote_code(job: Job, trust):
    # Every load passes the job's value explicitly, so transformers never asks on a terminal (issue 10);
    # a folder naming code of its own is refused unless it is on (tests/models/test_remote_code.py).
    from unittest import mock

    spec = job.parse(model={"trust_remote_code": trust})
    with mock.patch.object(AutoModelForCausalLM, "from_pretrained", wraps=AutoModelForCausalLM.from_pretrained) as load:
        load_base_model(spec, "cpu")
    assert load.call_args.kwargs["trust_remote_code"] is trust


def model_init_adapter(job: Job, value):
    if value == MISSING:
        return job.assert_refused("model.init_adapter", model={"init_adapter": value})
    from core.training.trainer import start_from_adapter

    _, trained = job.build()
    with torch.no_grad():
        for name, p in trained.named_parameters():
            if "lora_B" in name:
                p.fill_(0.25)  # not the fresh adapter's zeros, so starting from it is visible
    folder = job.tmp_path / "start-adapter"
    trained.save_pretrained(folder)
    spec = job.parse(model={"init_adapter": str(folder)})
    started = start_from_adapter(load_base_model(spec, "cpu"), spec.model.init_adapter)
    b_weights = {k: v for k, v in started.state_dict().items() if "lora_B" in k}
    assert b_weights and all(torch.all(v == 0.25) for v in b_weights.values())
    assert any(p.requires_grad for n, p in started.named_parameters() if "lora_" in n)  # it trains further


def train_keep_checkpoints(job: Job, keep):
    assert job.trainer_inputs(train={"keep_checkpoints": keep}).args.save_total_limit == keep


def write_samples(path, word: str, count: int = 5):
    """A small alpaca file whose every answer holds `word`."""
    path.write_text("".join(json.dumps({"instruction": f"Question {i}?", "output": f"The {word} number {i}."}) + "\n"
                            for i in range(count)))
    return path


def decoded(job: Job, rows) -> str:
    tokenizer = AutoTokenizer.from_pretrained(job.model_dir)
    return "\n".join(tokenizer.decode(row["input_ids"]) for row in rows)


def model_path(job: Job, value):
    if value == MISSING:
        return job.assert_refused("model.path", model={"path": value})
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig.from_pretrained(job.model_dir)
    config.num_hidden_layers = 3
    LlamaForCausalLM(config).save_pretrained(job.tmp_path / "other")
    AutoTokenizer.from_pretrained(job.model_dir).save_pretrained(job.tmp_path / "other")
    _, model = job.build(model={"path": str(job.tmp_path / "other")})
    assert len(model.base_model.model.model.layers) == 3


def data_dataset(job: Job, value):
    if value == MISSING:
        return job.assert_refused("data.dataset", data={"dataset": value})
    path = write_samples(job.tmp_path / "own.jsonl", "zebra")
    inputs = job.trainer_inputs(data={"dataset": str(path), "max_samples": 0})
    assert len(inputs.train) == 5 and decoded(job, inputs.train).count("zebra") == 5


def data_registry(job: Job, value):
    if value == MISSING:
        return job.assert_refused("data.registry", data={"registry": value})
    write_samples(job.tmp_path / "mine.jsonl", "walrus", 3)
    (job.tmp_path / "registry.json").write_text(json.dumps({"mine": {"file_name": "mine.jsonl"}}))
    inputs = job.trainer_inputs(data={"dataset": "mine", "registry": str(job.tmp_path / "registry.json"),
                                      "max_samples": 0})
    assert len(inputs.train) == 3 and "walrus" in decoded(job, inputs.train)


def data_placeholder(field: str):
    def check(job: Job, value):
        assert value not in decoded(job, job.trainer_inputs().train)  # the identity data's default is another
        assert value in decoded(job, job.trainer_inputs(data={field: value}).train)

    return check


def data_max_samples(job: Job, count):
    assert len(job.trainer_inputs(data={"max_samples": count}).train) == count


def data_max_length(job: Job, length):
    longest = max(len(row["input_ids"]) for row in job.trainer_inputs(data={"max_length": 128}).train)
    inputs = job.trainer_inputs(data={"max_length": length})
    assert longest > length >= max(len(row["input_ids"]) for row in inputs.train)  # rows were cut to it
    assert inputs.args.max_length == length


def data_train_on_prompt(job: Job, on):
    rows = job.trainer_inputs(data={"train_on_prompt": on}).train
    masked = sum(label == -100 for row in rows for label in row["labels"])
    assert (masked == 0) if on else masked > len(rows) * 10  # off: every prompt token is masked


def data_eval_split(job: Job, share):
    inputs = job.trainer_inputs(data={"eval_split": share})
    assert (len(inputs.train), len(inputs.eval)) == (16 - round(16 * share), round(16 * share))
    assert inputs.args.eval_strategy == "steps"


def data_eval_steps(job: Job, steps):
    assert job.trainer_inputs(data={"eval_split": 0.25, "eval_steps": steps}).args.eval_steps == steps


def data_batching(job: Job, kind):
    inputs = job.trainer_inputs(data={"batching": kind, "max_length": 256})
    assert inputs.args.padding_free is (kind != "padded")
    assert inputs.args.max_length == (256 if kind == "padded" else None)  # padded batches are cut by the Trainer
    if kind == "packed":  # several samples per row of at most max_length, each sample's length kept
        assert len(inputs.train) < 16 and all(len(row["input_ids"]) <= 256 for row in inputs.train)
        assert sum(len(row["seq_lengths"]) for row in inputs.train) == 16
    else:
        assert len(inputs.train) == 16


def train_arg(field: str, arg: str, expect=lambda value: value):
    """A train.* field that reaches the Trainer's arguments as `arg`."""
    def check(job: Job, value):
        got = getattr(job.trainer_inputs(train={field: value}).args, arg)
        assert getattr(got, "value", got) == expect(value), (arg, got)

    return check


def train_epochs(job: Job, epochs):
    inputs = job.trainer_inputs(train={"epochs": epochs, "max_steps": 0})
    assert inputs.args.num_train_epochs == epochs and inputs.args.max_steps == -1
    assert planned_steps(len(inputs.train), inputs.spec.train) == epochs * 16 / 4  # 16 samples in batches of 4


def train_batch_size(job: Job, size):
    args = job.trainer_inputs(train={"batch_size": size}).args
    assert args.per_device_train_batch_size == args.per_device_eval_batch_size == size


def train_save_steps(job: Job, steps):
    args = job.trainer_inputs(train={"save_steps": steps}).args
    assert (args.save_strategy.value, args.save_steps) == (("steps", steps) if steps else ("no", 500))


def train_seed(job: Job, seed):
    inputs = job.trainer_inputs(train={"seed": seed}, data={"max_samples": 5})
    assert inputs.args.seed == inputs.args.data_seed == seed
    other = job.trainer_inputs(data={"max_samples": 5})  # seed 42 draws another subset
    assert decoded(job, inputs.train) != decoded(job, other.train)


def runtime_device(job: Job, device):
    ids = gpu_ids(device) or []
    layout = {"device": device, "processes": max(len(ids), 1), "strategy": "ddp" if len(ids) > 1 else "single"}
    if device not in ("auto", "cpu") and torch.cuda.device_count() < max(len(ids), 1):
        return job.assert_refused("runtime.device", runtime=layout)
    args = job.trainer_inputs(runtime=layout).args
    assert args.use_cpu is (device == "cpu" or (device == "auto" and not torch.cuda.is_available()))


def runtime_precision(job: Job, precision):
    if precision == "fp16" and not torch.cuda.is_available():
        return job.assert_refused("runtime.precision", runtime={"precision": precision})  # emulated on a CPU, 3x slower
    args = job.trainer_inputs(runtime={"precision": precision}).args
    chosen = precision if precision != "auto" else ("bf16" if cpu_has_native_bf16() else "fp32")
    assert (args.bf16, args.fp16) == (chosen == "bf16", chosen == "fp16")


def train_gradient_checkpointing(job: Job, value):
    # The levers decide it before the model loads (auto from the memory estimate), and the Trainer gets the decision.
    from unittest import mock

    from core.training import levers

    inputs = job.trainer_inputs(train={"gradient_checkpointing": value})
    chosen = levers.choose(inputs.spec, "cpu", "fp32", inputs.train)
    assert chosen.checkpointing is (value == "on")  # auto: the tiny job fits in free memory, so off
    if value == "auto":  # and on when the estimate without it would not fit
        with mock.patch.object(levers, "free_memory", return_value=1):
            spec = job.parse(train={"gradient_checkpointing": "auto"})
            assert levers.choose(spec, "cpu", "fp32", inputs.train).checkpointing is True


def runtime_lean_loss(job: Job, on):
    from core.training import levers

    inputs = job.trainer_inputs(runtime={"lean_loss": on})
    assert levers.choose(inputs.spec, "cpu", "fp32", inputs.train).lean_loss is on


def runtime_shared_prefix(job: Job, on):
    from core.training import levers

    inputs = job.trainer_inputs(runtime={"shared_prefix": on})
    # Only where every row starts with the same tokens (the template's system prompt here) is there anything to share.
    assert levers.choose(inputs.spec, "cpu", "fp32", inputs.train).shared_prefix is on


def runtime_fused_lora(job: Job, on):
    from core.training import levers

    inputs = job.trainer_inputs(runtime={"fused_lora": on})
    assert levers.choose(inputs.spec, "cpu", "fp32", inputs.train).fused_lora is on


def group_config(job: Job, **runtime) -> dict:
    """The accelerate config a group run of the job writes into its run folder (this machine's device)."""
    spec = job.parse(runtime=runtime)
    assert runner.trainer_module(spec) == "core.training.group"
    return accelerate_config(spec, pick_device(spec.runtime.device))


def runtime_processes(job: Job, processes):
    job.assert_refused("runtime.strategy", runtime={"processes": processes})  # single is one process
    if processes > cpu_cores() and not torch.cuda.is_available():
        return job.assert_refused("runtime.processes", runtime={"processes": processes, "strategy": "ddp"})
    config = group_config(job, processes=processes, strategy="ddp")
    assert (config["num_processes"], config["num_machines"], config["distributed_type"]) == (processes, 1, "MULTI_GPU")


def runtime_strategy(job: Job, strategy):
    if strategy == "single":
        assert runner.trainer_module(job.parse()) == "core.training.trainer"
        return None
    layout = {"strategy": strategy, "processes": 2 if strategy == "ddp" else 1}
    if strategy != "ddp" and (not torch.cuda.is_available() or (strategy.startswith("deepspeed") and not deepspeed_installed())):
        return job.assert_refused("runtime.strategy", runtime=layout)  # GPUs only; DeepSpeed an optional install
    config = group_config(job, **layout)
    assert config["distributed_type"] == {"ddp": "MULTI_GPU", "fsdp": "FSDP"}.get(strategy, "DEEPSPEED")
    assert ("fsdp_config" in config) == (strategy == "fsdp") and ("deepspeed_config" in config) == strategy.startswith("deepspeed")


def runtime_nodes(job: Job, nodes):
    job.assert_refused("runtime.strategy", runtime={"nodes": nodes})
    config = group_config(job, nodes=nodes, strategy="ddp", main_port=free_port())
    assert (config["num_machines"], config["num_processes"], config["machine_rank"]) == (nodes, nodes, 0)
    spec = job.parse(runtime={"nodes": nodes, "strategy": "ddp"})
    assert [yaml.safe_load(c.split("<<'EOF'\n")[1].split("EOF\n")[0])["runtime"]["node_rank"]
            for c in node_commands(spec)] == list(range(1, nodes))


def runtime_node_rank(job: Job, rank):
    job.assert_refused("runtime.node_rank", runtime={"node_rank": rank})  # a one-node job has node 0 only
    assert group_config(job, node_rank=rank, nodes=rank + 1, strategy="ddp")["machine_rank"] == rank


def runtime_main_address(job: Job, address):
    assert group_config(job, main_address=address, nodes=2, strategy="ddp", main_port=free_port())["main_process_ip"] == address


def runtime_main_port(job: Job, port):
    assert group_config(job, main_port=port, nodes=2, strategy="ddp")["main_process_port"] == port
    assert group_config(job, main_port=port, processes=2, strategy="ddp")["main_process_port"] == 0  # one machine: any free port


def runtime_threads(job: Job, threads):
    before = torch.get_num_threads()
    try:
        job.trainer_inputs(runtime={"threads": threads})
        assert torch.get_num_threads() == threads
    finally:
        torch.set_num_threads(before)


# ---------------------------------------------------------------- the table

@dataclass
class Option:
    values: list[Any]  # each value is tried on every method that reads the option
    check: Callable[[Job, Any], None]


TOGGLE_VALUES = [[t] for t in LEAVES] + [[]]
OPTIONS: dict[str, Option] = {
    "lora.r": Option([6], lora_r),
    "lora.alpha": Option([3.0], lora_alpha),
    "lora.dropout": Option([0.25], lora_dropout),
    "lora.targets": Option(TOGGLE_VALUES, lora_targets),
    "lora.rslora": Option([True, False], lora_rslora),
    "lora.init": Option(["default", "gaussian", "pissa", "pissa_fast"], lora_init),
    "lora.plus_ratio": Option([16.0, 0.5], lora_plus_ratio),
    "lora.fa": Option([True, False], lora_fa),
    "quant.bits": Option([4, 8], quant_bits),
    "quant.quant_type": Option(["nf4", "fp4"], quant_quant_type),
    "quant.double_quant": Option([True, False], quant_double_quant),
    "quant.compute_dtype": Option(["auto", "fp32", "bf16", "fp16"], quant_compute_dtype),
    "quant.storage_dtype": Option(["uint8", "fp32"], quant_storage_dtype),
    "quant.paged_optimizer": Option([True, False], quant_paged_optimizer),
    "longlora.target_context": Option([2048, 128], longlora_target_context),
    "longlora.rope_scaling": Option(["linear", "dynamic", "yarn"], longlora_rope_scaling),
    "longlora.group_size_ratio": Option([0.5, 0.3], longlora_group_size_ratio),
    "longlora.train_embeddings": Option([True, False], longlora_train_embeddings),
    "longlora.train_norms": Option([True, False], longlora_train_norms),
    "adalora.init_r": Option([5], adalora_init_r),
    "adalora.target_r": Option([3, 20], adalora_target_r),
    "adalora.tinit": Option([2, 4], adalora_tinit),
    "adalora.tfinal": Option([2], adalora_tfinal),
    "adalora.delta_t": Option([2], adalora_delta_t),
    "adalora.beta1": Option([0.5], adalora_beta("beta1")),
    "adalora.beta2": Option([0.6], adalora_beta("beta2")),
    "adalora.orth_weight": Option([2.0, 0.0], adalora_orth_weight),
    "adalora.alpha": Option([3.0], adalora_alpha),
    "adalora.dropout": Option([0.25], adalora_dropout),
    "adalora.targets": Option(TOGGLE_VALUES, adalora_targets),
    "vera.r": Option([32], vera_r),
    "vera.d_initial": Option([0.3], vera_d_initial),
    "vera.projection_seed": Option([7], vera_projection_seed),
    "vera.save_projection": Option([True, False], vera_save_projection),
    "vera.dropout": Option([0.25], vera_dropout),
    "vera.targets": Option(TOGGLE_VALUES, vera_targets),
    "model.path": Option(["a second tiny model", MISSING], model_path),
    "model.trust_remote_code": Option([False, True], model_trust_remote_code),
    "model.init_adapter": Option(["an adapter saved here", MISSING], model_init_adapter),
    "data.dataset": Option(["a file of its own", MISSING], data_dataset),
    "data.registry": Option(["a registry of its own", MISSING], data_registry),
    "data.name": Option(["Zed"], data_placeholder("name")),
    "data.author": Option(["Acme Labs"], data_placeholder("author")),
    "data.max_samples": Option([5], data_max_samples),
    "data.max_length": Option([48], data_max_length),
    "data.train_on_prompt": Option([True, False], data_train_on_prompt),
    "data.eval_split": Option([0.25], data_eval_split),
    "data.eval_steps": Option([3], data_eval_steps),
    "data.batching": Option(["padded", "padding_free", "packed"], data_batching),
    "train.epochs": Option([2.0], train_epochs),
    "train.max_steps": Option([7], train_arg("max_steps", "max_steps")),
    "train.learning_rate": Option([3e-4], train_arg("learning_rate", "learning_rate")),
    "train.batch_size": Option([2], train_batch_size),
    "train.grad_accum": Option([3], train_arg("grad_accum", "gradient_accumulation_steps")),
    "train.weight_decay": Option([0.01], train_arg("weight_decay", "weight_decay")),
    "train.warmup_steps": Option([2], train_arg("warmup_steps", "warmup_steps")),
    "train.lr_scheduler": Option(["cosine", "linear", "constant", "constant_with_warmup"],
                                 train_arg("lr_scheduler", "lr_scheduler_type")),
    "train.max_grad_norm": Option([0.5, 0.0], train_arg("max_grad_norm", "max_grad_norm")),  # 0: no clipping
    "train.group_by_length": Option([True, False], train_arg("group_by_length", "train_sampling_strategy",
                                                             lambda on: "group_by_length" if on else "random")),
    "train.gradient_checkpointing": Option(["auto", "on", "off"], train_gradient_checkpointing),
    "train.logging_steps": Option([2], train_arg("logging_steps", "logging_steps")),
    "train.save_steps": Option([3, 0], train_save_steps),
    "train.keep_checkpoints": Option([1, 3], train_keep_checkpoints),
    "train.seed": Option([7], train_seed),
    "runtime.device": Option(["auto", "cpu", "cuda", "0", "0,1"], runtime_device),
    "runtime.precision": Option(["auto", "bf16", "fp16", "fp32"], runtime_precision),
    "runtime.threads": Option([3], runtime_threads),
    "runtime.lean_loss": Option([True, False], runtime_lean_loss),
    "runtime.shared_prefix": Option([True, False], runtime_shared_prefix),
    "runtime.fused_lora": Option([True, False], runtime_fused_lora),


    "runtime.processes": Option([2], runtime_processes),
    "runtime.strategy": Option(["single", "ddp", "fsdp", "deepspeed2", "deepspeed3"], runtime_strategy),
    "runtime.nodes": Option([3], runtime_nodes),
    "runtime.node_rank": Option([1], runtime_node_rank),
    "runtime.main_address": Option(["10.0.0.5"], runtime_main_address),
    "runtime.main_port": Option([29611], runtime_main_port),
}


def read_options() -> dict[str, Any]:
    """Every option some method reads, its own sections' and the fixed ones: dotted -> field."""
    sections = {**fixed_sections(), **{name: cls for m in METHODS.values() for name, cls in m.SECTIONS.items()}}
    return {f"{name}.{f.name}": f for name, cls in sections.items() for f in spec_fields(cls)}


def cases() -> list[tuple[str, str, int]]:
    """(method, option, value index): a method's own sections with each method that reads them, the fixed
    sections once (with LoRA)."""
    pairs = [(method, f"{name}.{f.name}") for method, m in METHODS.items() for name, cls in m.SECTIONS.items()
             for f in spec_fields(cls)]
    pairs += [("lora", f"{name}.{f.name}") for name, cls in fixed_sections().items() for f in spec_fields(cls)]
    return [(method, dotted, i) for method, dotted in pairs if dotted in OPTIONS
            for i in range(len(OPTIONS[dotted].values))]


CASES = cases()


def test_every_option_of_every_method_has_an_expectation():
    fields = read_options()
    assert set(fields) - set(OPTIONS) == set(), "options nobody checks: add them to OPTIONS"
    assert set(OPTIONS) - set(fields) == set(), "OPTIONS checks options no method reads any more"
    for dotted, f in fields.items():
        tried = OPTIONS[dotted].values
        flat = {v for value in tried for v in (value if isinstance(value, list) else [value])}
        if f.metadata["choices"]:
            assert set(f.metadata["choices"]) <= flat, f"{dotted}: untried {set(f.metadata['choices']) - flat}"
        elif f.type == "bool":
            assert flat == {True, False}, dotted
        else:
            assert any(value != f.default for value in tried), f"{dotted}: only its default is tried"


@pytest.mark.parametrize("method, dotted, index", CASES,
                         ids=[f"{m}-{d}={OPTIONS[d].values[i]}" for m, d, i in CASES])
def test_option_is_honoured_or_refused(method, dotted, index, tiny_model_dir, tmp_path):
    job = Job(tiny_model_dir, tmp_path, method)
    OPTIONS[dotted].check(job, OPTIONS[dotted].values[index])


# ---------------------------------------------------------------- LongLoRA with PiSSA and LoRA+, through the trainer

def test_longlora_with_pissa_and_loraplus_through_the_trainer(tiny_model_dir, workspace):
    """The acceptance case of both fixes at once: the adapter LongLoRA saves after PiSSA fits the original base
    (embeddings and norms included), and LoRA+'s rate for B reaches metrics.jsonl."""
    steps, ratio = 3, 16.0
    spec = spec_from_dict(tiny_job(tiny_model_dir, method="longlora", lora={"init": "pissa", "plus_ratio": ratio},
                                   train={"max_steps": steps, "save_steps": steps, "warmup_steps": 1},
                                   runtime={"threads": 1}))
    check_launch(spec)
    run = runner.start(spec, workspace)
    status = wait_for_end(run, timeout_s=300)
    assert status["state"] == "completed", run.log_tail(3000)

    records, _ = run.read_metrics()
    assert [r["step"] for r in records] == [1, 2, 3]
    assert len({r["learning_rate"] for r in records}) > 1  # warmup, then cosine: both rates move, the ratio stays
    for record in records:
        assert record["learning_rate_b"] == pytest.approx(ratio * record["learning_rate"], rel=1e-6), record

    job = Job(tiny_model_dir, None, "longlora")
    ids = job.prompt()
    # The model as trained: the last checkpoint holds the raw PiSSA adapter; loading it re-runs the (full,
    # deterministic) SVD on the base, giving the same residual weights the trainer trained on.
    trained = PeftModel.from_pretrained(job.original_base(spec), run.checkpoints_dir / f"checkpoint-{steps}")
    assert trained.peft_config["default"].init_lora_weights == "pissa"
    saved = PeftModel.from_pretrained(job.original_base(spec), run.adapter_dir)
    config = json.loads((run.adapter_dir / "adapter_config.json").read_text())
    assert config["init_lora_weights"] is True and config["r"] == 2 * TINY_R
    weights = load_file(run.adapter_dir / "adapter_model.safetensors")
    assert any("embed_tokens" in k for k in weights) and any("layernorm" in k for k in weights)
    want, got = logits(trained, ids), logits(saved, ids)
    assert not torch.allclose(want, logits(job.original_base(spec), ids), atol=1e-3), "training changed nothing"
    assert torch.allclose(got, want, atol=1e-4), (got - want).abs().max()
