"""Runs that can no longer produce a good adapter end failed with a named reason, on the real trainer:
a non-finite loss (NonFiniteLoss, at its step, no adapter), a full disk (DiskFull, the partial checkpoint
removed, the last whole one kept); and max_grad_norm 0 trains without clipping."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from safetensors.torch import load_file, save_file

from core.runs import runner
from tests.helpers import small_tmpfs, tiny_spec, wait_for_end


def broken_weights_model(tiny_model_dir, folder: Path) -> Path:
    """A copy of the tiny model whose final norm holds a NaN: its header and config are sound (the launch
    checks read only those), and every forward pass gives a NaN loss, as a damaged download would."""
    shutil.copytree(tiny_model_dir, folder)
    weights = load_file(folder / "model.safetensors")
    weights["model.norm.weight"][0] = float("nan")
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    return folder


def test_a_nan_loss_fails_the_run_at_its_step_and_saves_no_adapter(tiny_model_dir, workspace, tmp_path):
    from core.spec import check_launch

    model = broken_weights_model(tiny_model_dir, tmp_path / "nan-model")
    spec = tiny_spec(model, train={"max_steps": 4, "save_steps": 1})
    check_launch(spec)  # nothing here says the weights are bad: only training finds out
    run = runner.start(spec, workspace)
    status = wait_for_end(run)

    assert status["state"] == "failed", status
    assert status["error"]["kind"] == "NonFiniteLoss"
    assert status["error"]["message"].startswith("step 1: the gradient norm is nan")
    assert not run.adapter_dir.exists()
    assert not list(run.checkpoints_dir.glob("checkpoint-*"))  # step 1 was never applied, so never saved


def test_max_grad_norm_zero_trains_without_clipping(tiny_model_dir, workspace):
    run = runner.start(tiny_spec(tiny_model_dir, train={"max_steps": 2, "max_grad_norm": 0}), workspace)
    status = wait_for_end(run)
    assert status["state"] == "completed", f"{status}\n{run.log_tail(3000)}"
    records, _ = run.read_metrics()
    assert all(r["grad_norm"] > 0 for r in records if "loss" in r)  # still measured, just not clipped


@pytest.fixture
def small_disk(tmp_path):
    with small_tmpfs(tmp_path / "small-disk", "24m") as mount_point:
        yield mount_point


def test_a_full_disk_fails_as_disk_full_and_keeps_the_last_whole_checkpoint(tiny_model_dir, small_disk):
    # Each checkpoint holds the tokenizer (about 3.6 MB): a checkpoint every step fills 24 MB in a few steps.
    workspace = small_disk / "ws"
    run = runner.start(tiny_spec(tiny_model_dir, train={"max_steps": 40, "save_steps": 1, "keep_checkpoints": 1000}),
                       workspace)  # every checkpoint kept, so they fill the small disk
    status = wait_for_end(run)

    assert status["state"] == "failed", status
    assert status["error"]["kind"] == "DiskFull", status["error"]
    message = status["error"]["message"]
    assert "is full (" in message and " free)" in message
    checkpoints = sorted(run.checkpoints_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    assert checkpoints, "no whole checkpoint was written before the disk filled"
    for folder in checkpoints:  # every checkpoint left is whole: a resume can trust the newest
        state = json.loads((folder / "trainer_state.json").read_text())
        assert state["global_step"] == int(folder.name.split("-")[1])
    assert int(checkpoints[-1].name.split("-")[1]) < 40
    assert not run.adapter_dir.exists()
    assert not (run.path / ".adapter.tmp").exists()


def test_the_run_stops_at_the_step_whose_batch_turns_the_loss_nan(tiny_model_dir, workspace, tmp_path):
    # Only one sample holds a zebra emoji, and only the emoji's byte tokens have NaN embeddings (the output
    # layer is untied, so other samples stay finite): training is healthy until that sample's step comes.
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = tmp_path / "nan-emoji-model"
    shutil.copytree(tiny_model_dir, folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder)
    model.config.tie_word_embeddings = False
    model.lm_head.weight = torch.nn.Parameter(model.get_input_embeddings().weight.detach().clone())
    with torch.no_grad():
        for token in tokenizer("🦓", add_special_tokens=False)["input_ids"]:
            model.get_input_embeddings().weight[token] = float("nan")
    model.save_pretrained(folder)
    samples = [{"instruction": f"Say the number {n}.", "output": f"{n}" + (" 🦓" if n == 9 else "")} for n in range(12)]
    data = tmp_path / "numbers.json"
    data.write_text(json.dumps(samples), encoding="utf-8")

    spec = tiny_spec(folder, data={"dataset": str(data), "max_samples": 0},
                     train={"max_steps": 12, "batch_size": 1, "save_steps": 1, "keep_checkpoints": 100})
    run = runner.start(spec, workspace)
    status = wait_for_end(run)

    assert status["state"] == "failed" and status["error"]["kind"] == "NonFiniteLoss", status
    step = int(status["error"]["message"].split(":")[0].removeprefix("step "))
    assert step > 1  # with seed 42 the emoji sample is not in the first batch; earlier steps trained normally
    assert status["step"] == step - 1  # the run stopped at that step: it is not counted as done
    kept = sorted(int(p.name.split("-")[1]) for p in run.checkpoints_dir.glob("checkpoint-*"))
    assert kept == list(range(1, step))
    records, _ = run.read_metrics()
    assert [r["step"] for r in records] == list(range(1, step))
    assert all(r["loss"] == r["loss"] for r in records)  # every recorded loss is a number
    assert not run.adapter_dir.exists()


def test_the_guard_reads_the_norm_the_trainer_formed_and_forms_it_only_without_one():
    import torch

    from core.training.guards import NonFiniteLoss, RunGuard

    step = type("State", (), {"global_step": 4})()
    with pytest.raises(NonFiniteLoss, match="step 5: the gradient norm is nan"):
        RunGuard(step_norm=lambda: torch.tensor(float("nan"))).on_pre_optimizer_step(None, step, None, model=None)
    RunGuard(step_norm=lambda: 2.5).on_pre_optimizer_step(None, step, None, model=None)  # finite: the step goes on

    layer = torch.nn.Linear(2, 1)
    layer.weight.grad = torch.tensor([[float("inf"), 0.0]])
    with pytest.raises(NonFiniteLoss, match="norm is inf"):  # no norm from the Trainer yet: formed from the model
        RunGuard(step_norm=lambda: None).on_pre_optimizer_step(None, step, None, model=layer)


def test_the_trainer_hands_each_steps_norm_to_the_guard_once():
    from core.training.lean_trainer import LeanSFTTrainer

    trainer = object.__new__(LeanSFTTrainer)  # only the hand-over is tried here; the runs above train for real
    trainer._step_grad_norm = 3.0
    assert trainer.take_step_grad_norm() == 3.0
    assert trainer.take_step_grad_norm() is None  # the next read, before a new norm, forms its own
