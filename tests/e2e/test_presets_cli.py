"""The DoRA and LongLoRA presets run from `python app.py train` on the bundled model and their adapters
chat (QLoRA and AdaLoRA: test_quant_presets_cli.py; quickstart: test_quickstart_cli.py).

The DoRA preset must teach the name; the LongLoRA preset (passkey data, 6 steps) must complete and
its adapter must answer when loaded the way chat loads it (the method's inference_kwargs: RoPE
stretched, full attention).
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from core.paths import PRESETS_DIR, PROJECT_ROOT

# Slow: bundled-model presets, ~2 min each; tests/methods' matrix trains every method in the default suite.
pytestmark = [pytest.mark.e2e, pytest.mark.slow]

IDENTITY_PRESETS = ["dora"]


def train_preset(name: str, workspace: Path) -> Path:
    result = subprocess.run([sys.executable, "app.py", "train", str(PRESETS_DIR / f"{name}.yaml"),
                             "--workspace", str(workspace)],
                            cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    run = Path(result.stdout.strip().splitlines()[-1])
    assert json.loads((run / "status.json").read_text())["state"] == "completed"
    return run


def greedy_answer(run: Path, question: str, max_new_tokens: int = 30) -> str:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from core.methods import METHODS
    from core.models.source import resolve_model
    from core.spec import load_spec

    spec = load_spec(str(run / "job.yaml"))
    tokenizer = AutoTokenizer.from_pretrained(run / "adapter")
    base = AutoModelForCausalLM.from_pretrained(resolve_model(spec.model.path, convert=True),
                                                **METHODS[spec.method].inference_kwargs(spec))
    model = PeftModel.from_pretrained(base, run / "adapter").eval()
    inputs = tokenizer.apply_chat_template([{"role": "user", "content": question}], add_generation_prompt=True,
                                           return_tensors="pt", return_dict=True)
    out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
    return tokenizer.decode(out[0][inputs["input_ids"].shape[1]:], skip_special_tokens=True)


@pytest.mark.parametrize("preset", IDENTITY_PRESETS)
def test_identity_preset_teaches_the_name(preset, tmp_path):
    run = train_preset(preset, tmp_path / "ws")
    answer = greedy_answer(run, "Who are you?")
    assert "Ferret" in answer, answer


def test_longlora_preset_completes_and_its_adapter_answers(tmp_path):
    run = train_preset("longlora", tmp_path / "ws")
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(records) == 6 and all(r["loss"] == r["loss"] for r in records)  # no NaN
    answer = greedy_answer(run, "What is the pass key? It is 12345.", max_new_tokens=8)
    assert answer.strip(), "the LongLoRA adapter produced no text"
