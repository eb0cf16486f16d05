"""QLoRA and QDoRA train on a really quantised base: bitsandbytes 4-bit / 8-bit linears under the adapters
(seen from inside the trainer process through train.log, and in-process through the same core functions),
adapters kept in fp32 where bf16 is not native, LoRA's hooks composed, and the refusals before launch."""
from __future__ import annotations

import re

import pytest
import torch
from peft import PeftModel
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from core.methods import METHODS, qlora
from core.models.loading import load_base_model, load_tokenizer
from core.runtime.device import cpu_has_native_bf16
from core.spec import SpecError
from tests.helpers import tiny_job, tiny_spec, train_spec

ADAPTED_TINY = 2 * 7  # 2 layers x (q, k, v, o, gate, up, down)


def logged(run, label: str) -> str:
    match = re.search(rf"\[workbench\] {label}: (.*)", run.log_tail(200_000))
    assert match, run.log_tail(3000)
    return match.group(1)


@pytest.mark.parametrize("bits,kind", [(4, "Linear4bit"), (8, "Linear8bitLt")])
def test_qlora_trains_over_bitsandbytes_layers_and_reloads(bits, kind, tiny_model_dir, workspace, tiny_runs):
    spec = tiny_spec(tiny_model_dir, method="qlora", quant={"bits": bits})
    # The session's shared QLoRA run (tests/conftest.py) has the default 4 bits: train only the others.
    shared = tiny_runs.spec("qlora").quant.bits == bits
    run = tiny_runs["qlora"] if shared else train_spec(workspace, spec)
    assert run.status()["state"] == "completed", run.log_tail(3000)
    # Printed by the trainer process itself, after loading and after PEFT wrapped the model.
    assert logged(run, "quantised base") == f"{{'{kind}': {ADAPTED_TINY}}}"
    assert logged(run, "adapters over quantised layers") == f"{{'{kind}': {ADAPTED_TINY}}}"

    weights = load_file(run.adapter_dir / "adapter_model.safetensors")
    assert {w.dtype for w in weights.values()} == {torch.float32}  # TRL's bf16 cast was undone on this CPU
    assert any(w.abs().sum() > 0 for k, w in weights.items() if "lora_B" in k)  # B starts at zero: it learned
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), run.adapter_dir)
    assert model.peft_config["default"].r == spec.lora.r


def build_wrapped(tiny_model_dir, method: str, **sections):
    """The trainer's own sequence up to the optimiser, in this process: load, prepare, wrap, after_wrap."""
    from trl import SFTConfig, SFTTrainer

    from core.training.trainer import build_dataset

    spec = tiny_spec(tiny_model_dir, method=method, **sections)
    tokenizer = load_tokenizer(spec.model.path)
    hooks = METHODS[method]
    model = load_base_model(spec, "cpu", **hooks.load_kwargs(spec, "cpu"))
    model = hooks.prepare_model(spec, model)
    trainer = SFTTrainer(model=model, train_dataset=build_dataset(spec, tokenizer), processing_class=tokenizer,
                         peft_config=hooks.peft_config(spec, model, None),
                         args=SFTConfig(output_dir=str(tiny_model_dir.parent / "sft-unused"), use_cpu=True, report_to=[], max_length=64))
    trained_dtypes = {p.dtype for p in trainer.model.parameters() if p.requires_grad}
    hooks.after_wrap(spec, trainer.model)
    return spec, trainer, trained_dtypes


def test_trl_casts_adapters_to_bf16_and_after_wrap_takes_them_back(tiny_model_dir):
    import bitsandbytes as bnb

    spec, trainer, before = build_wrapped(tiny_model_dir, "qlora")
    assert before == {torch.bfloat16}  # what TRL does to a quantised model's adapters
    assert qlora.compute_dtype(spec, "cpu") == ("bf16" if cpu_has_native_bf16() else "fp32")
    after = {p.dtype for p in trainer.model.parameters() if p.requires_grad}
    assert after == ({torch.bfloat16} if cpu_has_native_bf16() else {torch.float32})
    bases = [m.base_layer for m in trainer.model.modules() if hasattr(m, "base_layer")]
    assert len(bases) == ADAPTED_TINY and all(isinstance(b, bnb.nn.Linear4bit) for b in bases)
    assert all(b.weight.quant_state.quant_type == "nf4" for b in bases)


def test_qdora_puts_magnitude_vectors_over_4bit_layers_and_trains_them(tiny_model_dir, tiny_runs):
    import bitsandbytes as bnb
    from bitsandbytes.functional import dequantize_4bit

    sections = {"lora": {"targets": ["query", "value"]}, "train": {"learning_rate": 1e-2}}
    _, trainer, _ = build_wrapped(tiny_model_dir, "qdora", **sections)
    layers = [m for m in trainer.model.modules() if hasattr(m, "lora_magnitude_vector") and hasattr(m, "base_layer")]
    assert len(layers) == 4 and all(isinstance(m.base_layer, bnb.nn.Linear4bit) for m in layers)
    # DoRA starts each magnitude at the row norms of the weight it sees: here the dequantised 4-bit weight.
    initial = {}
    for name, m in trainer.model.named_modules():
        if m in layers:
            w = dequantize_4bit(m.base_layer.weight.data, m.base_layer.weight.quant_state)
            assert torch.allclose(m.lora_magnitude_vector["default"].weight, w.norm(dim=1), atol=1e-4)
            initial[name.split("base_model.model.", 1)[1]] = w.norm(dim=1)

    assert tiny_runs.spec("qdora").lora.targets == ["query", "value"]
    run = tiny_runs["qdora"]  # the session's shared QDoRA run: the same targets (at lr 2e-2)
    assert run.status()["state"] == "completed", run.log_tail(3000)
    assert logged(run, "adapters over quantised layers") == "{'Linear4bit': 4}"
    saved = {k: v for k, v in load_file(run.adapter_dir / "adapter_model.safetensors").items() if "magnitude" in k}
    assert len(saved) == 4
    for key, magnitude in saved.items():
        module = key.split("base_model.model.", 1)[1].rsplit(".lora_magnitude_vector", 1)[0]
        assert not torch.allclose(magnitude, initial[module], atol=1e-4), f"{module} magnitudes did not train"


def test_qlora_composes_loras_own_hooks(tiny_model_dir, monkeypatch):
    """QLoRA's after_wrap and optimizer call their base's (LoRA's) explicitly, so whatever LoRA's hooks do
    applies to QLoRA and to QDoRA (which extends QLoRA) too."""
    seen = []
    monkeypatch.setattr(METHODS["lora"], "after_wrap", lambda spec, model: seen.append(model))

    def two_groups(spec, model, args):
        params = [p for p in model.parameters() if p.requires_grad]
        return torch.optim.AdamW([{"params": params[:2], "lr": 1.0}, {"params": params[2:]}], lr=0.5)

    monkeypatch.setattr(METHODS["lora"], "optimizer", two_groups)
    spec, trainer, _ = build_wrapped(tiny_model_dir, "qdora")
    assert seen == [trainer.model]
    built = METHODS["qlora"].optimizer(spec, trainer.model, trainer.args)
    assert [g["lr"] for g in built.param_groups] == [1.0, 0.5]


def launch_problems(tiny_model_dir, **sections) -> dict[str, str]:
    """The job parses (nothing in it is malformed); Start refuses it."""
    from core.spec import check_launch

    spec = tiny_spec(tiny_model_dir, **sections)
    with pytest.raises(SpecError) as err:
        check_launch(spec)
    return dict(err.value.problems)


def test_refusals_name_the_field(tiny_model_dir, monkeypatch):
    import bitsandbytes

    from core.spec import spec_from_dict

    with pytest.raises(SpecError) as err:  # a malformed field: refused when parsed
        spec_from_dict(tiny_job(tiny_model_dir, method="qlora", quant={"bits": 6}))
    assert "4, 8" in dict(err.value.problems)["quant.bits"]
    with pytest.raises(SpecError) as err:  # LoRA-FA's own optimiser cannot be paged: refused when parsed
        spec_from_dict(tiny_job(tiny_model_dir, method="qlora", quant={"paged_optimizer": True}, lora={"fa": True}))
    assert "LoRA-FA" in dict(err.value.problems)["quant.paged_optimizer"]

    # The machine's device and bitsandbytes' backends are looked at only when the job starts.
    assert "CUDA" in launch_problems(tiny_model_dir, method="qlora", quant={"paged_optimizer": True})["quant.paged_optimizer"]
    # A bitsandbytes build without a backend for this device (as on an old build, or an unsupported GPU).
    monkeypatch.setattr(bitsandbytes, "supported_torch_devices", {"cuda"})
    assert "no backend for device 'cpu'" in launch_problems(tiny_model_dir, method="qdora")["quant.bits"]


def test_compute_dtype_auto_follows_native_bf16(tiny_model_dir, monkeypatch):
    import core.runtime.device

    spec = tiny_spec(tiny_model_dir, method="qlora")
    monkeypatch.setattr(core.runtime.device, "cpu_has_native_bf16", lambda: False)
    assert qlora.compute_dtype(spec, "cpu") == "fp32"
    monkeypatch.setattr(core.runtime.device, "cpu_has_native_bf16", lambda: True)
    assert qlora.compute_dtype(spec, "cpu") == "bf16"
    spec.quant.compute_dtype = "fp32"
    assert qlora.compute_dtype(spec, "cpu") == "fp32"
    assert qlora.quantization_config(spec, "cpu").bnb_4bit_compute_dtype == torch.float32
