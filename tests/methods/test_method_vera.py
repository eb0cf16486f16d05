"""VeRA trains through the real trainer and is VeRA: only the per-layer vectors lambda_b and lambda_d
train, the shared random matrices stay exactly as the seed made them, the saved adapter reloads on the
base and generates, and targets VeRA cannot take are refused naming the field."""
from __future__ import annotations

import json

import pytest
import torch
from peft import PeftModel, get_peft_model
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from core.methods import METHODS
from core.models.params import count_parameters
from core.runs import runner
from core.spec import SpecError
from tests.helpers import tiny_spec, wait_for_end

RANK = 256  # VeRA's usual rank; the tiny model is 64 wide, the shared matrices do not care
TARGETS = ["query", "value", "mlp"]


def vera_job(**extra):
    return {"method": "vera", "vera": {"r": RANK, "targets": TARGETS, **extra},
            "train": {"learning_rate": 5e-2}}  # VeRA's vectors need rates about ten times LoRA's


def expected_trainable(model_dir) -> int:
    """Per adapted layer: lambda_b (one per output) + lambda_d (one per rank)."""
    config = json.loads((model_dir / "config.json").read_text())
    hidden, inter = config["hidden_size"], config["intermediate_size"]
    kv = config["num_key_value_heads"] * hidden // config["num_attention_heads"]
    outs = [hidden, kv, inter, inter, hidden]  # q v gate up down
    return config["num_hidden_layers"] * sum(out + RANK for out in outs)


def test_only_the_vectors_train(tiny_model_dir):
    spec = tiny_spec(tiny_model_dir, **vera_job())
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    peft_model = get_peft_model(model, METHODS["vera"].peft_config(spec, model))
    trainable = {n for n, p in peft_model.named_parameters() if p.requires_grad}
    assert trainable and all("vera_lambda_b" in n or "vera_lambda_d" in n for n in trainable), trainable
    assert sum(p.numel() for p in peft_model.parameters() if p.requires_grad) == expected_trainable(tiny_model_dir)
    assert count_parameters(spec)["trainable"] == expected_trainable(tiny_model_dir)
    shared = peft_model.base_model.vera_A["default"]
    assert shared.shape[0] == RANK and not shared.requires_grad


def test_vera_trains_keeps_shared_matrices_and_reloads(tiny_model_dir, workspace):
    spec = tiny_spec(tiny_model_dir, **vera_job())
    run = runner.start(spec, workspace)
    status = wait_for_end(run)
    assert status["state"] == "completed", run.log_tail(3000)

    weights = load_file(run.adapter_dir / "adapter_model.safetensors")
    lambda_b = [v for k, v in weights.items() if "vera_lambda_b" in k]
    lambda_d = [v for k, v in weights.items() if "vera_lambda_d" in k]
    assert len(lambda_b) == len(lambda_d) == 2 * 5  # 2 layers x (q, v, gate, up, down)
    # They start at zero and at d_initial; training moved every one of them.
    assert all(v.abs().max() > 0 for v in lambda_b)
    assert all(not torch.allclose(v, torch.full_like(v, 0.1)) for v in lambda_d)

    # The shared projections in the adapter are the ones the seed makes: frozen through training.
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    fresh = get_peft_model(model, METHODS["vera"].peft_config(spec, model))
    assert torch.equal(weights["base_model.vera_A"], fresh.base_model.vera_A["default"])
    assert torch.equal(weights["base_model.vera_B"], fresh.base_model.vera_B["default"])

    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    reloaded = PeftModel.from_pretrained(base, run.adapter_dir).eval()
    assert reloaded.peft_config["default"].peft_type.value == "VERA"
    tokenizer = AutoTokenizer.from_pretrained(run.adapter_dir)
    inputs = tokenizer("Who are you?", return_tensors="pt")
    with torch.no_grad():
        out = reloaded.generate(**inputs, max_new_tokens=4, do_sample=False)
        adapted = reloaded(**inputs).logits
        with reloaded.disable_adapter():
            plain = reloaded(**inputs).logits
    assert out.shape[1] > inputs["input_ids"].shape[1]
    assert not torch.allclose(adapted, plain, atol=1e-4), "the reloaded adapter changes nothing"


@pytest.mark.parametrize("targets", [["query", "head"], ["head"], []])
def test_targets_vera_cannot_take_are_refused(tiny_model_dir, targets):
    with pytest.raises(SpecError) as caught:
        tiny_spec(tiny_model_dir, method="vera", vera={"targets": targets})
    assert "vera.targets" in [key for key, _ in caught.value.problems], caught.value.problems
