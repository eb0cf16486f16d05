"""AdaLoRA really reallocates rank inside the Trainer: the allocator runs every step (ranks shrink to the
budget and reach metrics.jsonl), the saved adapter carries its pruned ranks and reloads with them, the
schedule uses the Trainer's own step count, the orthogonality penalty reaches the gradients, and bad
schedules are refused naming the field."""
from __future__ import annotations

import json
import re

import pytest
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

from core.methods import TrainPlan, adalora
from core.runs import runner
from core.spec import SpecError, spec_from_dict
from tests.helpers import tiny_job, tiny_spec, wait_for_end

ADAPTED_TINY = 2 * 7  # 2 layers x (q, k, v, o, gate, up, down)
INIT_R, TARGET_R = 6, 2


def adalora_run(tiny_model_dir, workspace, orth_weight: float):
    # Epochs, not max_steps: 14 samples in batches of 4 make an uneven last batch, so the planned step
    # count has to reproduce the Trainer's rounding (4 per epoch, 8 in all).
    spec = tiny_spec(tiny_model_dir, method="adalora",
                     data={"max_samples": 14, "max_length": 128},
                     train={"max_steps": 0, "epochs": 2, "learning_rate": 2e-2},
                     adalora={"init_r": INIT_R, "target_r": TARGET_R, "orth_weight": orth_weight})
    run = runner.start(spec, workspace)
    status = wait_for_end(run, timeout_s=300)
    assert status["state"] == "completed", run.log_tail(3000)
    records = [json.loads(line) for line in run.metrics_file.read_text().splitlines()]
    return run, records


@pytest.fixture(scope="module")
def penalised(tiny_model_dir, tmp_path_factory):
    return adalora_run(tiny_model_dir, tmp_path_factory.mktemp("ws"), orth_weight=5.0)


def test_planned_steps_agree_with_the_trainers(penalised):
    run, records = penalised
    planned, actual = re.search(r"adalora total_step: planned (\d+), trainer (\d+)", run.log_tail(200_000)).groups()
    assert planned == actual == "8"
    assert records[-1]["step"] == 8


def test_ranks_shrink_to_the_budget_and_reach_metrics(penalised):
    _, records = penalised
    assert all(len(r["ranks"]) == ADAPTED_TINY for r in records)
    totals = [sum(r["ranks"].values()) for r in records]
    assert totals[0] < INIT_R * ADAPTED_TINY  # pruning starts at step 1 (tinit 0)
    assert totals[-1] == TARGET_R * ADAPTED_TINY
    assert totals == sorted(totals, reverse=True), totals
    assert len(set(records[-1]["ranks"].values())) > 1, "the budget was not moved between layers"


def test_saved_adapter_keeps_pruned_ranks_and_reloads(penalised, tiny_model_dir):
    run, records = penalised
    config = json.loads((run.adapter_dir / "adapter_config.json").read_text())
    pattern = {k: sum(v) for k, v in config["rank_pattern"].items()}
    assert len(pattern) == ADAPTED_TINY and sum(pattern.values()) == TARGET_R * ADAPTED_TINY

    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), run.adapter_dir).eval()
    loaded = {name: m.lora_E["default"].shape[0] for name, m in model.named_modules() if hasattr(m, "lora_E")}
    assert len(loaded) == ADAPTED_TINY
    for name, rank in loaded.items():
        key = name.split("base_model.model.", 1)[1] + ".lora_E"
        assert rank == pattern[key]  # resized to the pruned rank, not init_r
        assert rank == records[-1]["ranks"][adalora.layer_label(key)]
    tokenizer = AutoTokenizer.from_pretrained(run.adapter_dir)
    inputs = tokenizer("Who are you?", return_tensors="pt")
    out = model.generate(**inputs, max_new_tokens=3, do_sample=False)
    assert out.shape[1] > inputs["input_ids"].shape[1]


def test_orthogonality_penalty_reaches_the_gradients(penalised, tiny_model_dir, tmp_path):
    """TRL's loss ignores PEFT's regulariser; the callback's penalty must make P and Q more orthogonal
    than the same run without it."""
    _, with_penalty = penalised
    _, without = adalora_run(tiny_model_dir, tmp_path / "ws", orth_weight=0.0)
    assert with_penalty[0]["orth_reg"] == pytest.approx(without[0]["orth_reg"], rel=1e-4)  # same start
    assert with_penalty[-1]["orth_reg"] < 0.9 * without[-1]["orth_reg"], (with_penalty[-1], without[-1])


def test_refusals_name_the_field(tiny_model_dir):
    with pytest.raises(SpecError) as err:
        spec_from_dict(tiny_job(tiny_model_dir, method="adalora", adalora={"init_r": 4, "target_r": 8, "tinit": 3, "tfinal": 1}))
    problems = dict(err.value.problems)
    assert "above the initial rank 4" in problems["adalora.target_r"]
    assert "run of 4 steps" in problems["adalora.tfinal"]  # tiny job: train.max_steps 4

    # With epochs the step count is known only at launch: the trainer refuses then, naming the fields.
    spec = tiny_spec(tiny_model_dir, method="adalora", train={"max_steps": 0}, adalora={"tinit": 2, "tfinal": 1})
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    with pytest.raises(ValueError, match=r"adalora.tinit \(2\) \+ adalora.tfinal \(1\).*3 steps"):
        adalora.peft_config(spec, model, TrainPlan(total_steps=3))


def test_rank_heat_map_is_layers_by_steps():
    from webui.charts import ranks_figure
    from webui.train_tab import ranks_update

    records = [{"step": s, "loss": 1.0, "ranks": {"0.q_proj": 6 - s, "0.v_proj": 6}} for s in (1, 2, 3)]
    heat = ranks_figure(records, "ranks").data[0]
    assert list(heat.y) == ["0.q_proj", "0.v_proj"] and list(heat.x) == [1, 2, 3]
    assert [list(row) for row in heat.z] == [[5, 4, 3], [6, 6, 6]]
    assert ranks_update(records, "en")["visible"] is True
    assert ranks_update([{"step": 1, "loss": 1.0}], "en")["visible"] is False
    assert torch.tensor(heat.z).shape == (2, 3)
