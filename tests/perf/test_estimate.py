"""The pre-launch estimate: its parts add up, each formula moves the way its cause says, and a 70B model
is estimated from a folder holding only config.json, in seconds."""
from __future__ import annotations

import json
import time

import pytest

from core.perf.estimate import ModelShape, estimate, estimate_job, optimizer_bytes, summary_lines, weight_bytes
from tests.helpers import tiny_spec

SMALL = ModelShape(layers=30, hidden=576, kv_dim=192, heads=9, intermediate=1536, vocab=49152,
                   base_params=134_515_008, linear_params=106_168_320)


def test_parts_add_up_to_the_total(tiny_model_dir):
    est = estimate_job(tiny_spec(tiny_model_dir))
    assert est.total == sum(est.parts.values())
    assert set(est.parts) == {"weights", "adapter", "gradients", "optimizer", "activations", "logits", "overhead"}
    assert all(v >= 0 for v in est.parts.values())
    lines = summary_lines(est)
    assert f"{est.total / 2**20:,.0f} MiB" in lines[0]


def test_formulas_follow_their_causes():
    base = dict(batch=8, seq_len=128, trainable=4_884_480, adapter_params=4_884_480, ranks_per_layer=7 * 16)
    plain = estimate(SMALL, **base)
    ckpt = estimate(SMALL, **base, checkpointing=True)
    assert ckpt.parts["activations"] < plain.parts["activations"] / 3
    assert ckpt.step_flops > plain.step_flops  # one more forward
    longer = estimate(SMALL, **{**base, "seq_len": 256})
    assert longer.parts["activations"] == 2 * plain.parts["activations"]
    dora = estimate(SMALL, **base, dora_outputs_per_layer=5184)
    assert dora.parts["activations"] > plain.parts["activations"]
    # 4-bit < 8-bit < fp32 weights; double quantisation shrinks the constants
    fp32, q8, q4, q4_single = (weight_bytes(SMALL, b, dq) for b, dq in [(None, True), (8, True), (4, True), (4, False)])
    assert q4 < q4_single < q8 < fp32
    assert fp32 == 4 * SMALL.base_params
    # optimiser states: AdamW two fp32 moments; 8-bit and paged a quarter of that plus scales; SGD none
    n = 1_000_000
    assert optimizer_bytes(n, "adamw") == 8 * n == optimizer_bytes(n, "lorafa")
    assert 2 * n < optimizer_bytes(n, "adamw_8bit") == optimizer_bytes(n, "paged_adamw_8bit") < 3 * n
    assert optimizer_bytes(n, "sgd") == 0
    with pytest.raises(ValueError, match="unknown optimizer"):
        optimizer_bytes(n, "lion")
    # the lean loss never holds more than a chunk of logits; TRL's tiles grow with every position
    trl = estimate(SMALL, **base, lean_loss=False)
    assert trl.parts["logits"] > 5 * plain.parts["logits"]
    timed = estimate(SMALL, **base, peak_gflops=100.0)
    assert timed.step_s == pytest.approx(timed.step_flops / (100e9 * 0.5))


def test_job_estimate_reads_the_method(tiny_model_dir):
    gpu = {"device": "cuda", "precision": "bf16"}
    lora = estimate_job(tiny_spec(tiny_model_dir), **gpu)
    qlora = estimate_job(tiny_spec(tiny_model_dir, method="qlora"), **gpu)
    fa = estimate_job(tiny_spec(tiny_model_dir, lora={"fa": True}), **gpu)
    assert qlora.parts["weights"] < lora.parts["weights"]
    # on a CPU the fp32 checkpoint read in to be quantised stays mapped: the 4-bit copies come on top
    cpu = {"device": "cpu", "precision": "fp32"}
    assert estimate_job(tiny_spec(tiny_model_dir, method="qlora"), **cpu).parts["weights"] > \
        estimate_job(tiny_spec(tiny_model_dir), **cpu).parts["weights"]
    assert fa.parts["optimizer"] < lora.parts["optimizer"]  # A frozen: half the adapter trains


def test_70b_from_config_json_alone_in_seconds(tmp_path):
    folder = tmp_path / "llama-70b"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 8192,
        "intermediate_size": 28672, "num_hidden_layers": 80, "num_attention_heads": 64, "num_key_value_heads": 8,
        "vocab_size": 32000, "max_position_embeddings": 4096, "rms_norm_eps": 1e-5, "tie_word_embeddings": False,
    }))
    started = time.monotonic()
    spec = tiny_spec(folder, method="qlora")
    est = estimate_job(spec, device="cuda", precision="bf16")  # where a 70B QLoRA runs
    took = time.monotonic() - started
    assert took < 60, f"70B estimate took {took:.0f}s"
    # 69B parameters at 4 bits with constants, embeddings and head in fp32: about 35-37 GB of weights
    assert 33e9 < est.parts["weights"] < 39e9
    assert est.total == sum(est.parts.values())


def test_shown_in_train_tab_and_params(tiny_model_dir, tmp_path):
    import subprocess
    import sys

    import yaml

    from core.paths import PROJECT_ROOT
    from tests.helpers import tiny_job
    from webui.train_tab import estimate_check_html, param_count_text

    data = tiny_job(tiny_model_dir)
    est = estimate_job(tiny_spec(tiny_model_dir))
    english, chinese = param_count_text(data, "en"), param_count_text(data, "zh")
    assert f"Estimated peak memory: {est.total / 2**20:,.0f} MiB" in english
    assert "activations" in english and "预计峰值内存" in chinese
    # at the end of a run, predicted and measured side by side; nothing while it runs
    status = {"estimate": {"predicted": {"peak_mb": 1100.0, "step_s": 0.5},
                           "measured": {"peak_mb": 1000.0, "step_s": 0.4}}}
    assert "predicted 1,100 MiB, measured 1,000 MiB (+10%)" in estimate_check_html(status, "en")
    assert estimate_check_html({"estimate": {"predicted": {"peak_mb": 1.0}}}, "en") == ""
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump(data))
    out = subprocess.run([sys.executable, "app.py", "params", str(job)], cwd=PROJECT_ROOT, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "estimated peak memory:" in out.stdout and "activations" in out.stdout and "optimizer" in out.stdout
