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
from tests.helpers import METHOD_MATRIX as MATRIX
from tests.helpers import TINY_JOB


def test_every_registered_method_has_a_matrix_entry():
    assert set(MATRIX) == set(METHODS)


@pytest.mark.parametrize("method", sorted(MATRIX))
def test_method_trains_saves_reloads_and_generates(method, tiny_model_dir, tiny_runs):
    run = tiny_runs[method]  # trained through the real trainer once per session; the export tests read it too
    status = run.status()
    assert status["state"] == "completed", run.log_tail(3000)
    assert status["step"] == status["total_steps"] == TINY_JOB["train"]["max_steps"]

    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    model = PeftModel.from_pretrained(base, run.adapter_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(run.adapter_dir)
    inputs = tokenizer("Who are you?", return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=4, do_sample=False)
    assert out.shape[1] > inputs["input_ids"].shape[1]
