"""The CUDA paths, each trained for real through the runner on the tiny model. Marked `gpu`: they run where a
CUDA GPU is visible and are skipped elsewhere with the reason, which `pytest -rs` lists (tests/conftest.py).

This machine has none, so these tests have not run here; they are written to run as they are on a GPU
machine (`pytest -m gpu -rs`)."""
from __future__ import annotations

import math
import re

import pytest

from core.methods import METHODS
from tests.helpers import METHOD_MATRIX, tiny_spec, train_spec

pytestmark = pytest.mark.gpu


def trained(workspace, model_dir, method="lora", **sections):
    """A tiny run on the GPU through the runner; returns (run, its losses)."""
    runtime = {"device": "cuda", **sections.pop("runtime", {})}
    spec = tiny_spec(model_dir, method=method, runtime=runtime, **{**METHOD_MATRIX[method], **sections})
    run = train_spec(workspace, spec)
    losses = [r["loss"] for r in run.read_metrics()[0] if "loss" in r]
    assert losses and all(math.isfinite(x) for x in losses), losses
    assert "device=cuda" in run.log_file.read_text()
    return run, losses


def test_qlora_4bit_base_on_cuda(workspace, tiny_model_dir):
    """bitsandbytes packs the base into 4-bit layers on the GPU, and QLoRA trains on them."""
    import bitsandbytes as bnb

    from core.models.loading import load_base_model

    spec = tiny_spec(tiny_model_dir, method="qlora", runtime={"device": "cuda"})
    model = load_base_model(spec, "cuda", **METHODS["qlora"].load_kwargs(spec, "cuda"))
    packed = [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert packed and all(m.weight.device.type == "cuda" for m in packed)
    assert {m.weight.quant_state.quant_type for m in packed} == {spec.quant.quant_type}
    trained(workspace, tiny_model_dir, "qlora")


def test_paged_optimiser_on_cuda(workspace, tiny_model_dir):
    import bitsandbytes as bnb
    from peft import get_peft_model

    from core.methods import TrainPlan
    from core.models.loading import load_base_model
    from core.training.trainer import training_args

    spec = tiny_spec(tiny_model_dir, method="qlora", runtime={"device": "cuda"}, quant={"paged_optimizer": True})
    method = METHODS["qlora"]
    model = method.prepare_model(spec, load_base_model(spec, "cuda", **method.load_kwargs(spec, "cuda")))
    peft_model = get_peft_model(model, method.peft_config(spec, model, TrainPlan(total_steps=4)))
    args = training_args(spec, workspace / "out", "cuda", "fp32", 4, False)
    optimiser = method.optimizer(spec, peft_model, args)
    assert isinstance(optimiser, bnb.optim.PagedAdamW8bit)
    trained(workspace, tiny_model_dir, "qlora", quant={"paged_optimizer": True})


def test_s2_attention_on_cuda(workspace, tiny_model_dir):
    """LongLoRA's shifted sparse attention trains on the GPU at twice the model's context."""
    trained(workspace, tiny_model_dir, "longlora")


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_on_cuda(workspace, tiny_model_dir, precision):
    import torch

    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16")
    run, _ = trained(workspace, tiny_model_dir, runtime={"precision": precision})
    assert f"precision={precision}" in run.log_file.read_text()


def test_ddp_on_nccl(workspace, tiny_model_dir):
    """Two GPUs, one process each: both ranks train their half of the data on their own GPU; one adapter."""
    import torch

    if torch.cuda.device_count() < 2:
        pytest.skip("DDP on NCCL needs two CUDA GPUs")
    run, _ = trained(workspace, tiny_model_dir, runtime={"device": "0,1", "processes": 2, "strategy": "ddp"},
                     train={"batch_size": 2})
    log = run.log_file.read_text()
    for rank in (0, 1):
        assert re.search(rf"\[rank{rank}\]:\[workbench\] rank {rank} of 2 trained on 8 rows", log), log[-3000:]
    assert log.count("adapter saved to") == 1


def test_gpu_telemetry_in_metrics(workspace, tiny_model_dir):
    """Every logged record of a CUDA run carries the GPU's memory in use and utilisation (power where the
    board reports it), keyed by the GPU's id."""
    run, _ = trained(workspace, tiny_model_dir, runtime={"device": "0"}, train={"logging_steps": 1})
    records = [r for r in run.read_metrics()[0] if "loss" in r]
    assert records and all(set(r["gpu_memory_mb"]) == {"0"} and r["gpu_memory_mb"]["0"] > 0 for r in records)
    assert all(0 <= r["gpu_utilization"]["0"] <= 100 for r in records)


def test_warm_host_on_a_gpu_machine_forks_only_cpu_trainers(tiny_model_dir, tmp_path, own_runtime):
    """With GPUs in reach, a warm host forks a CUDA run's supervisor but the trainer starts as a new
    interpreter (a driver set up before a fork does not work in the child); a `device: cpu` run's trainer
    is forked and trains as it would on a machine without GPUs."""
    from core.runs import runner, supervisor
    from tests.helpers import wait_for_end, wait_until

    first = runner.start(tiny_spec(tiny_model_dir, runtime={"device": "cpu"}), tmp_path / "ws-first")
    assert wait_for_end(first)["state"] == "completed", first.log_tail()
    sock = wait_until(lambda: next(own_runtime.glob("*.sock"), None), 180, "the warm host's socket")

    on_gpu = runner.start(tiny_spec(tiny_model_dir, runtime={"device": "cuda"}), tmp_path / "ws-gpu")
    assert wait_for_end(on_gpu)["state"] == "completed", on_gpu.log_tail()
    on_cpu = runner.start(tiny_spec(tiny_model_dir, runtime={"device": "cpu"}), tmp_path / "ws-cpu")
    assert wait_for_end(on_cpu)["state"] == "completed", on_cpu.log_tail()

    host_log = sock.with_suffix(".log").read_text()
    assert f"started core.runs.supervisor {on_gpu.path}" in host_log
    assert f"started core.runs.supervisor {on_cpu.path}" in host_log
    gpu_log, cpu_log = on_gpu.log_file.read_text(), on_cpu.log_file.read_text()
    assert "device=cuda" in gpu_log and supervisor.FORKED_LINE not in gpu_log
    assert "device=cpu" in cpu_log and supervisor.FORKED_LINE in cpu_log


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
def test_fused_lora_layers_match_peft_on_cuda(dtype):
    """The fused LoRA layer (core/training/fused_lora.py) on the GPU, in fp32 and under bf16/fp16 autocast."""
    import torch

    from tests.training.test_fused_lora import peft_pair, rel, run

    plain, fused, count = peft_pair(lora_dropout=0.1)
    plain, fused = plain.cuda(), fused.cuda()
    x = torch.randn(3, 5, 32, device="cuda")
    autocast = dtype != "float32"
    (y1, gx1, p1), (y2, gx2, p2) = (run(m, x, autocast, getattr(torch, dtype)) for m in (plain, fused))
    tolerance = {"float32": 1e-5, "bfloat16": 2 ** -6, "float16": 2 ** -9}[dtype]  # two steps of the format
    assert y2.dtype == y1.dtype and rel(y2, y1) < tolerance and rel(gx2, gx1) < tolerance
    assert all(rel(p2[name], p1[name]) < tolerance for name in p1)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_shared_prefix_in_one_pass_on_cuda(tiny_model_dir, dtype):
    """The one-pass shared prefix (core/training/shared_prefix.py) on CUDA's SDPA kernels equals the plain forward."""
    from tests.training.test_levers import one_pass_against_plain

    assert one_pass_against_plain(tiny_model_dir, "cuda", dtype) < {"float32": 1e-5, "bfloat16": 2 ** -6}[dtype]
