"""DoRA trains through the real trainer, reloads with PEFT, and is DoRA: its adapter carries
magnitude vectors, and training moved them away from the base weights' row norms they start at."""
from __future__ import annotations

import torch
from peft import PeftModel
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer


def test_dora_trains_saves_reloads_and_moves_its_magnitudes(tiny_model_dir, tiny_runs):
    run = tiny_runs["dora"]  # the session's shared DoRA run: query and value, lr 2e-2 (tests/conftest.py)
    assert run.status()["state"] == "completed", run.log_tail(3000)

    weights = load_file(run.adapter_dir / "adapter_model.safetensors")
    magnitudes = {k: v for k, v in weights.items() if "lora_magnitude_vector" in k}
    assert len(magnitudes) == 2 * 2  # 2 layers x (q_proj, v_proj)

    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    base_weights = dict(base.named_parameters())
    moved = 0
    for key, magnitude in magnitudes.items():
        # e.g. base_model.model.model.layers.0.self_attn.q_proj.lora_magnitude_vector
        module = key.split("base_model.model.", 1)[1].rsplit(".lora_magnitude_vector", 1)[0]
        initial = base_weights[f"{module}.weight"].detach().norm(dim=1)  # DoRA starts at ||W|| per output row
        assert magnitude.shape == initial.shape
        moved += not torch.allclose(magnitude, initial, atol=1e-4)
    assert moved == len(magnitudes), "training left some magnitude vectors at their initial value"

    model = PeftModel.from_pretrained(base, run.adapter_dir).eval()
    assert model.peft_config["default"].use_dora
    tokenizer = AutoTokenizer.from_pretrained(run.adapter_dir)
    inputs = tokenizer("Who are you?", return_tensors="pt")
    out = model.generate(**inputs, max_new_tokens=3, do_sample=False)
    assert out.shape[1] == inputs["input_ids"].shape[1] + 3 or out[0, -1] == tokenizer.eos_token_id
