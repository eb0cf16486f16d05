"""Every method in the picker trains a few steps through the real trainer, saves its adapter,
reloads with plain PEFT on the base model, and generates.

What makes each method itself (4-bit linears, magnitude vectors, pruned ranks, frozen A) is
asserted in its own tests/test_method_<name>.py; this file guards the common path, and fails
when a method is added to the registry without a matrix entry.
"""
from __future__ import annotations

import pytest
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

from core.methods import METHODS
from core.runs import runner
from tests.helpers import METHOD_MATRIX as MATRIX
from tests.helpers import tiny_spec, wait_for_end


def test_every_registered_method_has_a_matrix_entry():
    assert set(MATRIX) == set(METHODS)


@pytest.mark.parametrize("method", sorted(MATRIX))
def test_method_trains_saves_reloads_and_generates(method, tiny_model_dir, workspace):
    spec = tiny_spec(tiny_model_dir, method=method, **MATRIX[method])
    run = runner.start(spec, workspace)
    status = wait_for_end(run)
    assert status["state"] == "completed", run.log_tail(3000)
    assert status["step"] == spec.train.max_steps

    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    model = PeftModel.from_pretrained(base, run.adapter_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(run.adapter_dir)
    inputs = tokenizer("Who are you?", return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=4, do_sample=False)
    assert out.shape[1] > inputs["input_ids"].shape[1]
