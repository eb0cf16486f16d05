"""Target toggles (query, value, mlp, ...) map onto each architecture's real layer names, and PEFT wraps exactly those."""
from __future__ import annotations

import pytest
import torch.nn as nn
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, GPT2Config, GPT2LMHeadModel

from core.methods.targets import resolve_targets

# PEFT notes that GPT-2's Conv1D needs fan_in_fan_out and sets it itself; that is expected here.
pytestmark = pytest.mark.filterwarnings("ignore:fan_in_fan_out:UserWarning")


@pytest.fixture(scope="module")
def llama(tiny_model_dir):
    return AutoModelForCausalLM.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="module")
def gpt2():
    # GPT-2 fuses query/key/value into one Conv1D (c_attn) and names two different layers c_proj.
    return GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=100, n_positions=64))


@pytest.mark.parametrize("toggles, expected", [
    (["query"], ["q_proj"]),
    (["value"], ["v_proj"]),
    (["query", "value"], ["q_proj", "v_proj"]),
    (["key"], ["k_proj"]),
    (["projection"], ["o_proj"]),
    (["mlp"], ["down_proj", "gate_proj", "up_proj"]),
    (["head"], ["lm_head"]),
    (["all-linear"], ["down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"]),
])
def test_llama_targets(llama, toggles, expected):
    assert resolve_targets(llama, toggles) == expected


@pytest.mark.parametrize("toggles, expected", [
    (["query"], ["c_attn"]),
    (["value"], ["c_attn"]),
    (["projection"], ["attn.c_proj"]),
    (["mlp"], ["c_fc", "mlp.c_proj"]),
    (["head"], ["lm_head"]),
    (["all-linear"], ["attn.c_proj", "c_attn", "c_fc", "mlp.c_proj"]),
])
def test_gpt2_targets(gpt2, toggles, expected):
    assert resolve_targets(gpt2, toggles) == expected


def test_toggle_matching_nothing_names_it():
    # A model with an MLP but no attention layers: asking for "query" must say so, not train nothing.
    class MlpOnly(nn.Module):
        def __init__(self):
            super().__init__()
            self.up_proj = nn.Linear(4, 8)
            self.down_proj = nn.Linear(8, 4)

    with pytest.raises(ValueError, match="'query'"):
        resolve_targets(MlpOnly(), ["mlp", "query"])
    with pytest.raises(ValueError):
        resolve_targets(MlpOnly(), [])


def wrapped_modules(model, toggles) -> set[str]:
    """Full names of the layers PEFT puts a LoRA adapter on, given our resolved targets."""
    config = LoraConfig(r=2, lora_alpha=4, target_modules=resolve_targets(model, toggles), task_type="CAUSAL_LM")
    peft_model = get_peft_model(model, config)
    try:
        names = {name.removeprefix("base_model.model.") for name, module in peft_model.named_modules()
                 if hasattr(module, "lora_A")}
    finally:
        peft_model.unload()  # give the module-scoped model back without adapters
    return names


@pytest.mark.parametrize("toggles, expected", [
    (["query", "value"], {f"model.layers.{i}.self_attn.{n}" for i in (0, 1) for n in ("q_proj", "v_proj")}),
    (["mlp"], {f"model.layers.{i}.mlp.{n}" for i in (0, 1) for n in ("gate_proj", "up_proj", "down_proj")}),
    (["all-linear"], {f"model.layers.{i}.{n}" for i in (0, 1) for n in (
        "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
        "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")}),
])
def test_peft_wraps_exactly_the_llama_layers(llama, toggles, expected):
    assert wrapped_modules(llama, toggles) == expected


@pytest.mark.parametrize("toggles, expected", [
    # The two c_proj layers must stay apart: "projection" is the attention output only.
    (["projection"], {"transformer.h.0.attn.c_proj"}),
    (["mlp"], {"transformer.h.0.mlp.c_fc", "transformer.h.0.mlp.c_proj"}),
    (["query"], {"transformer.h.0.attn.c_attn"}),
    (["all-linear"], {"transformer.h.0.attn.c_attn", "transformer.h.0.attn.c_proj",
                      "transformer.h.0.mlp.c_fc", "transformer.h.0.mlp.c_proj"}),
])
def test_peft_wraps_exactly_the_gpt2_layers(gpt2, toggles, expected):
    assert wrapped_modules(gpt2, toggles) == expected
