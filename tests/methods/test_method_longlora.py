"""LongLoRA: shifted sparse attention is the pattern the paper describes (checked against a dense
reference written here from the description, not from the implementation), it runs inside real
Llama and Qwen2 models through transformers' attention interface, a run at 4x a tiny model's context
trains, saves, and reloads with PEFT under the same RoPE scaling and full attention, and the check
refuses what cannot work before anything launches."""
from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from peft import PeftModel
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from core.data.passkey import passkey_rows, write_rows
from core.methods import METHODS, longlora, s2_attention
from core.paths import DATA_DIR
from core.runs import runner
from core.spec import SpecError, check_launch, spec_from_dict
from tests.helpers import tiny_job, tiny_spec, wait_for_end

# ---------------------------------------------------------------- the reference, from the paper's words

def reference_s2(q, k, v, groups, key_ok=None):
    """Dense S2-Attn from the description: groups of G tokens; the last H//2 heads use groups shifted by
    G/2; causal attention within a group; padded keys are never attended (except a query by itself).
    G = ceil(L / groups) rounded up to even (the documented choice for lengths that do not divide)."""
    b, h, length, d = q.shape
    group = -(-length // groups)
    group += group % 2
    pos = torch.arange(length)
    out = torch.empty_like(q)
    for head in range(h):
        shift = group // 2 if (head >= h - h // 2 and groups > 1) else 0
        gid = (pos + shift) // group
        allowed = (gid[:, None] == gid[None, :]) & (pos[None, :] <= pos[:, None])
        for row in range(b):
            ok = allowed if key_ok is None else (allowed & key_ok[row][None, :]) | torch.eye(length, dtype=torch.bool)
            scores = (q[row, head] @ k[row, head].T) / d**0.5
            scores = scores.masked_fill(~ok, float("-inf"))
            out[row, head] = scores.softmax(-1) @ v[row, head]
    return out


def qkv(b=2, h=4, length=48, d=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(b, h, length, d, generator=g) for _ in range(3)]


@pytest.mark.parametrize("length", [48, 37, 5])
def test_one_group_is_ordinary_causal_attention(length):
    q, k, v = qkv(length=length)
    expected = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    got = s2_attention.shifted_sparse_attention(q, k, v, None, groups=1)
    assert torch.allclose(got, expected, atol=1e-5)


@pytest.mark.parametrize("length,groups", [(48, 4), (64, 8), (37, 4), (50, 3)])
def test_shifted_groups_match_the_paper_reference(length, groups):
    q, k, v = qkv(length=length, h=5)  # an odd head count: 3 plain heads, 2 shifted
    got = s2_attention.shifted_sparse_attention(q, k, v, None, groups=groups)
    assert torch.allclose(got, reference_s2(q, k, v, groups), atol=1e-5)
    # and it is not full attention: the groups really cut the context
    assert not torch.allclose(got, F.scaled_dot_product_attention(q, k, v, is_causal=True), atol=1e-3)


def test_padding_masks_match_the_reference_on_real_tokens():
    q, k, v = qkv(length=40)
    key_ok = torch.ones(2, 40, dtype=torch.bool)
    key_ok[0, :7] = False  # left padding
    key_ok[1, 30:] = False  # right padding
    got = s2_attention.shifted_sparse_attention(q, k, v, key_ok, groups=4)
    ref = reference_s2(q, k, v, 4, key_ok)
    assert torch.allclose(got[0, :, 7:], ref[0, :, 7:], atol=1e-5)
    assert torch.allclose(got[1, :, :30], ref[1, :, :30], atol=1e-5)
    assert not got.isnan().any()


def test_grouped_query_attention_through_the_interface_function():
    """Two kv heads serve four query heads; the layer hands (b, L, heads, d) back like sdpa does."""
    q, _, _ = qkv(h=4, length=32)
    _, k, v = qkv(h=2, length=32, seed=1)
    module = SimpleNamespace(training=True, config=SimpleNamespace(s2_attention_groups=4))
    out, weights = s2_attention.s2_attention_forward(module, q, k, v, None, scaling=8**-0.5)
    assert weights is None and out.shape == (2, 32, 4, 8)
    k_full, v_full = k.repeat_interleave(2, dim=1), v.repeat_interleave(2, dim=1)
    assert torch.allclose(out.transpose(1, 2), reference_s2(q, k_full, v_full, 4), atol=1e-5)
    module.training = False  # inference: plain full causal attention
    out, _ = s2_attention.s2_attention_forward(module, q, k, v, None, scaling=8**-0.5)
    expected = F.scaled_dot_product_attention(q, k_full, v_full, is_causal=True)
    assert torch.allclose(out.transpose(1, 2), expected, atol=1e-5)


# ---------------------------------------------------------------- inside real models

def tiny_config(arch: str, max_positions: int = 128, vocab: int = 512, **extra):
    from transformers import LlamaConfig, Qwen2Config

    cls = {"llama": LlamaConfig, "qwen2": Qwen2Config}[arch]
    return cls(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
               num_key_value_heads=2, vocab_size=vocab, max_position_embeddings=max_positions,
               tie_word_embeddings=True, **extra)


def save_tiny(folder, arch, tokenizer=None, **config):
    from transformers import AutoModelForCausalLM as Auto

    torch.manual_seed(0)
    model = Auto.from_config(tiny_config(arch, **config))
    model.save_pretrained(folder)
    if tokenizer is not None:
        tokenizer.save_pretrained(folder)
    return folder


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_models_run_s2_attention_through_the_attention_interface(arch, tmp_path):
    s2_attention.register()
    folder = save_tiny(tmp_path / arch, arch)
    dense = AutoModelForCausalLM.from_pretrained(folder).train()
    sparse = AutoModelForCausalLM.from_pretrained(folder, attn_implementation=s2_attention.NAME).train()
    ids = torch.randint(0, 512, (2, 48), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[1, 40:] = 0

    sparse.config.s2_attention_groups = 1  # one group: must be the model's ordinary causal attention
    assert torch.allclose(sparse(input_ids=ids, attention_mask=mask).logits[:, :40],
                          dense(input_ids=ids, attention_mask=mask).logits[:, :40], atol=1e-4)

    # Four groups: the same as the model running the dense reference as its attention function.
    def reference_forward(module, query, key, value, attention_mask, dropout=0.0, scaling=None, **kw):
        rep = query.shape[1] // key.shape[1]
        out = reference_s2(query, key.repeat_interleave(rep, 1), value.repeat_interleave(rep, 1), 4)
        return out.transpose(1, 2).contiguous(), None

    from transformers import AttentionInterface

    AttentionInterface.register("reference_s2", reference_forward)
    reference = AutoModelForCausalLM.from_pretrained(folder, attn_implementation="reference_s2").train()
    sparse.config.s2_attention_groups = 4
    got = sparse(input_ids=ids).logits
    assert torch.allclose(got, reference(input_ids=ids).logits, atol=1e-4)
    assert not torch.allclose(got, dense(input_ids=ids).logits, atol=1e-3)
    got.sum().backward()  # trains: gradients reach the projections
    assert sparse.model.layers[0].self_attn.q_proj.weight.grad.abs().sum() > 0


def test_peft_config_trains_embeddings_and_norms_found_on_the_model(tmp_path):
    spec = spec_from_dict({"method": "longlora", "model": {"path": str(save_tiny(tmp_path / "q", "qwen2"))}})
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "q")
    config = longlora.peft_config(spec, model)
    assert set(config.modules_to_save) == {"embed_tokens", "input_layernorm", "post_attention_layernorm", "norm"}
    assert config.ensure_weight_tying  # the tiny model ties its output layer to the embeddings
    spec.longlora.train_embeddings = False
    assert "embed_tokens" not in longlora.peft_config(spec, model).modules_to_save


def test_rope_scaling_factor_is_target_over_original(tmp_path):
    folder = save_tiny(tmp_path / "m", "llama")
    spec = spec_from_dict({"method": "longlora", "model": {"path": str(folder)}, "data": {"max_length": 256},
                           "longlora": {"target_context": 512, "rope_scaling": "yarn"}})
    kwargs = longlora.rope_kwargs(spec)
    assert kwargs["rope_parameters"]["rope_type"] == "yarn" and kwargs["rope_parameters"]["factor"] == 4.0
    assert kwargs["rope_parameters"]["original_max_position_embeddings"] == 128
    assert longlora.inference_kwargs(spec) == kwargs
    assert longlora.load_kwargs(spec, "cpu")["attn_implementation"] == "s2_attn"
    spec.longlora.target_context = 128  # at the model's own context: nothing to stretch
    assert longlora.rope_kwargs(spec) == {}


# ---------------------------------------------------------------- refusals before launch

def problems_of(job):
    with pytest.raises(SpecError) as err:
        spec_from_dict(job)
    return dict(err.value.problems)


def launch_problems_of(job):
    """The job parses; Start refuses it after reading the model's config."""
    spec = spec_from_dict(job)
    with pytest.raises(SpecError) as err:
        check_launch(spec)
    return dict(err.value.problems)


def test_check_refuses_what_cannot_work(tiny_model_dir, tmp_path):
    bad = problems_of(tiny_job(tiny_model_dir, method="longlora", data={"max_length": 256},
                               longlora={"group_size_ratio": 0.3, "target_context": 128}))
    assert "whole number of groups" in bad["longlora.group_size_ratio"]
    assert "below data.max_length" in bad["longlora.target_context"]
    # The tiny model ties its output layer to the embeddings: only its config says so, read at Start.
    bad = launch_problems_of(tiny_job(tiny_model_dir, method="longlora", lora={"targets": ["query", "head"]}))
    assert "drop 'head'" in bad["lora.targets"]

    from transformers import GPT2Config, MambaConfig

    for name, config, words in [
        ("mamba", MambaConfig(hidden_size=16, num_hidden_layers=1, vocab_size=64), "attention interface"),
        ("gpt2", GPT2Config(n_embd=16, n_layer=1, n_head=2, vocab_size=64), "no rotary position embeddings"),
        ("scaled", tiny_config("llama", rope_parameters={"rope_type": "linear", "factor": 2.0, "rope_theta": 1e4}), "already uses"),
        ("sliding", tiny_config("qwen2", use_sliding_window=True, sliding_window=16, max_window_layers=0), "sliding-window"),
    ]:
        config.save_pretrained(tmp_path / name)  # the method's check reads only the config
        # (Start's folder check would first ask for weights and a tokenizer; the method's own check is the one here.)
        bad = dict(METHODS["longlora"].check_launch(spec_from_dict(tiny_job(tmp_path / name, method="longlora"))))
        assert words in bad["model.path"], (name, bad)


# ---------------------------------------------------------------- passkey data

def test_passkey_rows_are_deterministic_and_hold_their_key():
    rows = passkey_rows(5, 512, seed=3)
    assert rows == passkey_rows(5, 512, seed=3)
    assert rows != passkey_rows(5, 512, seed=4)
    for row in rows:
        key = row["output"].split()[-1].rstrip(".")
        assert len(key) == 5 and f"The pass key is {key}." in row["instruction"]
        assert row["instruction"].rstrip().endswith("What is the pass key?")
    info = json.loads((DATA_DIR / "dataset_info.json").read_text())["passkey"]
    bundled = json.loads((DATA_DIR / info["file_name"]).read_text())
    assert bundled == passkey_rows(24, 2080, seed=0), "data/passkey.json is not what the generator writes"


# ---------------------------------------------------------------- a real run at 4x the context

def test_run_at_four_times_the_context_trains_reloads_and_generates(tmp_path, workspace):
    from core.models.loading import load_tokenizer

    tokenizer = load_tokenizer("SmolLM2-135M-Instruct")
    folder = save_tiny(tmp_path / "llama128", "llama", tokenizer, max_positions=128, vocab=len(tokenizer))
    data = tmp_path / "passkey.json"
    write_rows(passkey_rows(4, 480, seed=1), data)
    spec = tiny_spec(folder, method="longlora",
                     data={"dataset": str(data), "max_length": 512, "max_samples": 0},
                     longlora={"target_context": 512},
                     train={"max_steps": 2, "batch_size": 2, "learning_rate": 1e-2})
    run = runner.start(spec, workspace)
    status = wait_for_end(run, timeout_s=300)
    assert status["state"] == "completed", run.log_tail(3000)
    assert "samples" in run.log_tail(5000)

    weights = load_file(run.adapter_dir / "adapter_model.safetensors")
    assert any("embed_tokens" in key for key in weights) and any("input_layernorm" in key for key in weights)

    base = AutoModelForCausalLM.from_pretrained(folder, **longlora.inference_kwargs(spec))
    assert base.config.rope_parameters["factor"] == 4.0 and base.config._attn_implementation == "sdpa"
    before = base.get_input_embeddings().weight.detach().clone()
    model = PeftModel.from_pretrained(base, run.adapter_dir).eval()
    assert not torch.equal(model.get_input_embeddings().weight, before), "the trained embeddings did not load"
    assert torch.equal(model.get_output_embeddings().weight, model.get_input_embeddings().weight), "untied"
    prompt = tokenizer(passkey_rows(1, 480, seed=9)[0]["instruction"], return_tensors="pt")
    assert prompt["input_ids"].shape[1] > 128 * 3  # far past the tiny model's own context
    with torch.no_grad():
        out = model.generate(**prompt, max_new_tokens=4, do_sample=False)
    assert out.shape[1] > prompt["input_ids"].shape[1]


def test_benchmark_script_measures_both_attentions():
    import importlib.util

    from core.paths import PROJECT_ROOT

    spec = importlib.util.spec_from_file_location("bench_s2attn", PROJECT_ROOT / "scripts" / "bench_s2attn.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    result = bench.measure(length=64, groups=4, repeats=1, device="cpu")
    assert result["full_s"] > 0 and result["s2_s"] > 0
    assert result["full_saved_mb"] > 0 and result["s2_saved_mb"] > 0
