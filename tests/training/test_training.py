"""The real trainer, in its own process, on the tiny Llama: the run folder it leaves is the contract.
(Stop, and one run per workspace: tests/runs/test_runner.py.)"""
from __future__ import annotations

import math

import pytest

from core.runs import runner
from core.spec import load_spec
from tests.helpers import kill_leftover_trainers, tiny_spec, wait_for_end

METRIC_KEYS = {"step", "epoch", "loss", "learning_rate", "grad_norm", "tokens_per_second",
               "samples_per_second", "memory_mb", "elapsed_s", "eta_s"}

# 16 samples in batches of 4 for 8 steps: exactly two epochs, so every sample is seen exactly twice
# whatever the shuffling. A learning rate this high moves a random tiny model's loss visibly in 8 steps.
STEPS, BATCH, LR = 8, 4, 1e-2


@pytest.fixture(scope="module")
def completed(tiny_model_dir, tmp_path_factory):
    """One finished run shared by the tests below; training it is the slow part."""
    workspace = tmp_path_factory.mktemp("ws")
    spec = tiny_spec(tiny_model_dir, train={"max_steps": STEPS, "batch_size": BATCH, "learning_rate": LR})
    run = runner.start(spec, workspace)
    status = wait_for_end(run)
    yield spec, run, status
    kill_leftover_trainers(workspace)


def test_run_completes_and_job_yaml_replays(completed):
    spec, run, status = completed
    assert status["state"] == "completed", run.log_tail()
    assert status["error"] is None
    assert status["step"] == status["total_steps"] == STEPS
    assert status["started_at"] <= status["ended_at"]
    assert load_spec(str(run.job)).to_dict() == spec.to_dict()


def test_a_run_without_a_quantised_base_never_loads_bitsandbytes(completed):
    """PEFT imports bitsandbytes (and torch's compiler with it) whenever it is installed; the trainer leaves it
    out of LoRA's process. It once came in anyway, through a transformers import made before that decision."""
    _, run, _ = completed
    assert "bitsandbytes not loaded (no quantised base)" in run.log_tail(20000)


def test_metrics_has_one_full_record_per_step(completed):
    _, run, _ = completed
    records, _ = run.read_metrics()
    assert [r["step"] for r in records] == list(range(1, STEPS + 1))
    for record in records:
        assert set(record) >= METRIC_KEYS, METRIC_KEYS - set(record)
        assert all(isinstance(record[k], (int, float)) for k in METRIC_KEYS), record
        assert record["tokens_per_second"] > 0 and record["samples_per_second"] > 0
        assert record["memory_mb"] > 0 and math.isfinite(record["loss"])
    assert records[0]["learning_rate"] == pytest.approx(LR)  # no warmup: the first step runs at full rate
    assert records[-1]["epoch"] == pytest.approx(2.0) and records[-1]["eta_s"] == 0
    elapsed = [r["elapsed_s"] for r in records]
    assert elapsed == sorted(elapsed)


def test_loss_falls(completed):
    # Seeds fix the data order and the adapter init, so this is deterministic; the drop is about 0.28 nats.
    _, run, _ = completed
    losses = [r["loss"] for r in run.read_metrics()[0]]
    assert losses[-1] < losses[0] - 0.1, losses


def test_tokens_per_second_counts_only_real_tokens(completed, tiny_model_dir):
    """tokens_per_second / samples_per_second share one time span, so with one step per record
    tokens in that step = batch * tokens_per_second / samples_per_second, free of timing noise.
    Over two whole epochs that must add up to twice the dataset's unpadded length."""
    from core.models.loading import load_tokenizer
    from core.training.trainer import build_dataset

    spec, run, _ = completed
    lengths = sorted(len(ids) for ids in build_dataset(spec, load_tokenizer(str(tiny_model_dir)))["input_ids"])
    real = 2 * sum(lengths)
    # The fewest padded tokens any batching could give; if the trainer counted padding it would be at least this.
    least_padded = 2 * sum(BATCH * max(lengths[i:i + BATCH]) for i in range(0, len(lengths), BATCH))

    records = run.read_metrics()[0]
    per_step = [BATCH * r["tokens_per_second"] / r["samples_per_second"] for r in records]
    # The record rounds tokens_per_second to 0.01 and samples_per_second to 0.001; this bounds what that costs.
    slack = 0.5 + sum(t * (0.005 / r["tokens_per_second"] + 0.0005 / r["samples_per_second"])
                      for t, r in zip(per_step, records))
    assert least_padded - real > slack, "padding must be distinguishable from rounding"
    assert abs(sum(per_step) - real) <= slack, (sum(per_step), real, least_padded)


def test_adapter_loads_on_the_base_and_generates(completed, tiny_model_dir):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _, run, _ = completed
    adapter = run.adapter_dir
    for name in ("adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "tokenizer_config.json"):
        assert (adapter / name).is_file(), name
    tokenizer = AutoTokenizer.from_pretrained(adapter)
    assert tokenizer.chat_template and len(tokenizer) == len(AutoTokenizer.from_pretrained(tiny_model_dir))

    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), adapter).eval()
    # LoRA starts with B = 0; a trained, saved adapter must have moved it.
    lora_b = [p for n, p in model.named_parameters() if "lora_B" in n]
    assert lora_b and any(p.abs().sum() > 0 for p in lora_b)

    inputs = tokenizer.apply_chat_template([{"role": "user", "content": "Who are you?"}], add_generation_prompt=True,
                                           return_tensors="pt", return_dict=True)
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=3, min_new_tokens=3, do_sample=False)
    assert out.shape[1] == inputs["input_ids"].shape[1] + 3


def test_peak_memory_follows_the_runs_device_not_whether_cuda_is_set_up(monkeypatch):
    """On a GPU machine a CPU run's libraries may set CUDA up; its memory is still the process's RSS (the
    H100 run of the GPU tests showed 0 MB for CPU runs before this)."""
    import torch

    from core.training.callback import peak_memory_mb

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda *a: 3 * 2**20)
    assert peak_memory_mb("cuda") == 3
    assert peak_memory_mb("cpu") > 50  # this interpreter's peak RSS, with torch loaded
