"""Acceptance for the spine on the bundled model: `python app.py train presets/quickstart.yaml`
completes, its loss falls, and the adapter it leaves answers to the name it was taught.
The run is trained once per session (the `quickstart_run` fixture, tests/conftest.py) and shared."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e


def greedy_answer(adapter: Path, question: str) -> str:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from core.models.source import resolve_model

    tokenizer = AutoTokenizer.from_pretrained(adapter)
    base = AutoModelForCausalLM.from_pretrained(resolve_model("SmolLM2-135M-Instruct", convert=True))
    model = PeftModel.from_pretrained(base, adapter).eval()
    inputs = tokenizer.apply_chat_template([{"role": "user", "content": question}], add_generation_prompt=True,
                                           return_tensors="pt", return_dict=True)
    out = model.generate(**inputs, max_new_tokens=30, do_sample=False)
    return tokenizer.decode(out[0][inputs["input_ids"].shape[1]:], skip_special_tokens=True)


def test_quickstart_from_cli_teaches_the_name(quickstart_run):
    # The fixture ran `app.py train presets/quickstart.yaml`, which exited 0; its last stdout line is the run.
    workspace, run = quickstart_run.workspace, quickstart_run.run
    assert run.parent == workspace / "runs"
    assert (run / "job.yaml").is_file()
    assert json.loads((run / "status.json").read_text())["state"] == "completed"

    losses = [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(losses) >= 10
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5, losses

    answer = greedy_answer(run / "adapter", "Who are you?")
    assert "Ferret" in answer, answer
