"""The LoRA-family options each do what they say, through the real trainer where the trainer is what
decides it: rsLoRA's scaling, LoRA+'s rate for B, LoRA-FA's frozen A, PiSSA's adapter that still fits
the original base; and combinations that cannot work are refused before launch, naming the field."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch
from peft import PeftModel, get_peft_model
from peft.tuners.lora import LoraLayer
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from core.methods import METHODS, lora
from core.models.params import count_parameters
from core.paths import PROJECT_ROOT
from core.runs import runner
from core.spec import SpecError
from tests.helpers import tiny_spec, wait_for_end

R, ALPHA = 4, 8.0  # the tiny job's rank and alpha


def train_run(tiny_model_dir, workspace, **sections):
    spec = tiny_spec(tiny_model_dir, **sections)
    run = runner.start(spec, workspace)
    status = wait_for_end(run)
    assert status["state"] == "completed", run.log_tail(3000)
    return spec, run


def wrapped(spec, model_dir):
    """The tiny model wrapped the way the trainer wraps it: the method's config, then its after_wrap."""
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    peft_model = get_peft_model(model, METHODS[spec.method].peft_config(spec, model))
    METHODS[spec.method].after_wrap(spec, peft_model)
    return peft_model


def trainer_args(lr=1e-3):
    return SimpleNamespace(learning_rate=lr, weight_decay=0.0, adam_beta1=0.9, adam_beta2=0.999, adam_epsilon=1e-8)


def lora_scalings(model) -> set[float]:
    return {m.scaling["default"] for m in model.modules() if isinstance(m, LoraLayer)}


def prompt_ids(model_dir):
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    return tokenizer("Who are you? Tell me about yourself.", return_tensors="pt")["input_ids"]


# ---- rsLoRA ---------------------------------------------------------------------------------------------

def test_rslora_trained_adapter_scales_by_alpha_over_sqrt_r(tiny_model_dir, workspace):
    spec, run = train_run(tiny_model_dir, workspace, lora={"rslora": True})
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), run.adapter_dir)
    assert lora_scalings(model) == {ALPHA / R ** 0.5}  # 4.0, where plain LoRA gives 2.0

    plain = wrapped(tiny_spec(tiny_model_dir), tiny_model_dir)
    assert lora_scalings(plain) == {ALPHA / R}


# ---- LoRA+ ----------------------------------------------------------------------------------------------

def test_loraplus_optimizer_gives_b_the_ratio_times_the_rate(tiny_model_dir):
    for method in ("lora", "dora"):  # DoRA runs LoRA's hooks, so the option reaches it too
        spec = tiny_spec(tiny_model_dir, method=method, lora={"plus_ratio": 16})
        model = wrapped(spec, tiny_model_dir)
        optimizer = METHODS[method].optimizer(spec, model, trainer_args(lr=1e-3))
        rate = {id(p): group["lr"] for group in optimizer.param_groups for p in group["params"]}
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        assert {n for n, p in named if id(p) not in rate} == set(), "a trainable parameter is not optimised"
        for name, param in named:
            expected = 16e-3 if ("lora_B" in name or "magnitude" in name) else 1e-3
            assert rate[id(param)] == pytest.approx(expected), name


def test_loraplus_trainer_really_steps_b_at_the_ratio(tiny_model_dir, workspace):
    # learning_rate_b is read from the optimiser the trainer steps, at each log; the schedule (cosine
    # with warmup) moves both rates, their ratio must stay.
    spec, run = train_run(tiny_model_dir, workspace, lora={"plus_ratio": 16}, train={"warmup_steps": 1})
    records, _ = run.read_metrics()
    assert len(records) == spec.train.max_steps
    assert len({r["learning_rate"] for r in records}) > 1
    for record in records:
        assert record["learning_rate_b"] == pytest.approx(16 * record["learning_rate"], rel=1e-6), record


# ---- LoRA-FA --------------------------------------------------------------------------------------------

def tiny_b_count(model_dir, r=R) -> int:
    """Parameters in every B of an all-linear adapter on the tiny Llama: r x out per projection."""
    config = json.loads((model_dir / "config.json").read_text())
    hidden, inter = config["hidden_size"], config["intermediate_size"]
    kv = config["num_key_value_heads"] * hidden // config["num_attention_heads"]
    outs = [hidden, kv, kv, hidden, inter, inter, hidden]  # q k v o gate up down
    return config["num_hidden_layers"] * r * sum(outs)


def test_lorafa_has_no_gradient_on_a(tiny_model_dir):
    spec = tiny_spec(tiny_model_dir, lora={"fa": True})
    model = wrapped(spec, tiny_model_dir)
    optimizer = METHODS["lora"].optimizer(spec, model, trainer_args())
    assert type(optimizer).__name__ == "LoraFAOptimizer"
    ids = prompt_ids(tiny_model_dir)
    model(input_ids=ids, labels=ids).loss.backward()
    a = {n: p for n, p in model.named_parameters() if "lora_A" in n}
    b = {n: p for n, p in model.named_parameters() if "lora_B" in n}
    assert a and b
    assert all(not p.requires_grad and p.grad is None for p in a.values())
    assert all(p.requires_grad and p.grad is not None for p in b.values())
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == tiny_b_count(tiny_model_dir)


def test_lorafa_trains_b_only_and_counts_only_b(tiny_model_dir, workspace):
    spec, run = train_run(tiny_model_dir, workspace, lora={"fa": True}, train={"save_steps": 1, "keep_checkpoints": 10})
    only_b = tiny_b_count(tiny_model_dir)
    assert count_parameters(spec)["trainable"] == only_b  # what the Train tab shows
    cli = subprocess.run([sys.executable, "app.py", "params", str(run.job)], cwd=PROJECT_ROOT,
                         capture_output=True, text=True, timeout=300)
    assert f"trainable params: {only_b:,} ||" in cli.stdout, cli.stdout + cli.stderr[-2000:]
    logged = re.search(r"trainable params: ([\d,]+)", run.log_file.read_text())
    assert int(logged.group(1).replace(",", "")) == only_b  # what the trainer itself reports

    # After step 1 B is no longer zero, so an unfrozen A would get gradients and move in steps 2-4.
    first = load_file(run.checkpoints_dir / "checkpoint-1" / "adapter_model.safetensors")
    final = load_file(run.adapter_dir / "adapter_model.safetensors")
    a_keys = [k for k in final if "lora_A" in k]
    b_keys = [k for k in final if "lora_B" in k]
    assert a_keys and b_keys
    assert all(torch.equal(first[k], final[k]) for k in a_keys), "an A matrix changed during training"
    assert all(not torch.equal(first[k], final[k]) for k in b_keys), "a B matrix stopped training"


# ---- PiSSA ----------------------------------------------------------------------------------------------

def test_pissa_adapter_works_on_the_original_base(tiny_model_dir, workspace):
    spec, run = train_run(tiny_model_dir, workspace, lora={"init": "pissa"}, train={"save_steps": 4})
    ids = prompt_ids(tiny_model_dir)

    # The trained model as it was in memory: the checkpoint holds the raw PiSSA adapter of the last step;
    # PEFT loading it re-runs the (deterministic, full) SVD on the base, giving the same residual weights.
    trained = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir),
                                        run.checkpoints_dir / "checkpoint-4").eval()
    assert trained.peft_config["default"].init_lora_weights == "pissa"

    # The saved adapter is plain LoRA of twice the rank: nothing touches the base when it loads.
    config = json.loads((run.adapter_dir / "adapter_config.json").read_text())
    assert config["init_lora_weights"] is True and config["r"] == 2 * R
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    original_q = base.model.layers[0].self_attn.q_proj.weight.detach().clone()
    saved = PeftModel.from_pretrained(base, run.adapter_dir).eval()
    assert torch.equal(saved.base_model.model.model.layers[0].self_attn.q_proj.base_layer.weight, original_q)

    with torch.no_grad():
        want = trained(input_ids=ids).logits
        got = saved(input_ids=ids).logits
        untouched = AutoModelForCausalLM.from_pretrained(tiny_model_dir)(input_ids=ids).logits
    assert not torch.allclose(want, untouched, atol=1e-3), "training changed nothing, so the comparison proves nothing"
    assert torch.allclose(got, want, atol=1e-4), (got - want).abs().max()


# ---- refused before launch ------------------------------------------------------------------------------

REFUSED = {
    "lora+ with lora-fa": ({"method": "lora", "lora": {"fa": True, "plus_ratio": 16}}, "lora.plus_ratio"),
    "lora+ ratio below 1": ({"method": "lora", "lora": {"plus_ratio": 0.5}}, "lora.plus_ratio"),
    "pissa with dora": ({"method": "dora", "lora": {"init": "pissa"}}, "lora.init"),
    "pissa_fast with dora": ({"method": "dora", "lora": {"init": "pissa_fast"}}, "lora.init"),
    "lora-fa with dora": ({"method": "dora", "lora": {"fa": True}}, "lora.fa"),
    "unknown init": ({"method": "lora", "lora": {"init": "olora"}}, "lora.init"),
}


@pytest.mark.parametrize("job, field", REFUSED.values(), ids=REFUSED.keys())
def test_bad_combinations_are_refused_naming_the_field(tiny_model_dir, job, field):
    with pytest.raises(SpecError) as caught:
        tiny_spec(tiny_model_dir, **job)
    assert field in [key for key, _ in caught.value.problems], caught.value.problems


def test_combinations_that_work_are_accepted(tiny_model_dir):
    for job in ({"method": "dora", "lora": {"rslora": True, "plus_ratio": 16}},
                {"method": "lora", "lora": {"init": "pissa", "fa": True, "rslora": True}},
                {"method": "lora", "lora": {"init": "gaussian", "plus_ratio": 4}}):
        tiny_spec(tiny_model_dir, **job)


def test_quantised_bases_are_told_pissa_needs_full_precision(tiny_model_dir):
    # For QLoRA/QDoRA's check: PEFT's PiSSA refuses quantised layers, so they must refuse it before launch.
    assert [f for f, _ in lora.quantised_problems(tiny_spec(tiny_model_dir, lora={"init": "pissa"}))] == ["lora.init"]
    assert lora.quantised_problems(tiny_spec(tiny_model_dir, lora={"init": "gaussian"})) == []
