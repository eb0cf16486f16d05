"""Parameter counts before launch: exact, from config.json alone, the same in the CLI as in core."""
from __future__ import annotations

import importlib
import json
import subprocess
import sys
import time

import pytest
import yaml

from core.models.params import ParamCountError, count_parameters
from core.paths import PROJECT_ROOT
from tests.helpers import tiny_job, tiny_spec

# Published sizes: Llama-2-7B (multi-head attention) and Llama-3-8B (grouped-query attention, 8 kv heads).
BIG_CONFIGS = {
    "llama2-7b": ({"hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32,
                   "num_attention_heads": 32, "num_key_value_heads": 32, "vocab_size": 32000}, 6_738_415_616),
    "llama3-8b": ({"hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
                   "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 128256}, 8_030_261_248),
}

# Toggle sets and the Llama projections they reach.
TARGET_SETS = {
    "query+value": (["query", "value"], ["q_proj", "v_proj"]),
    "key+value": (["key", "value"], ["k_proj", "v_proj"]),
    "all-linear": (["all-linear"], ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]),
}


def projection_shapes(config: dict) -> dict[str, tuple[int, int]]:
    """(in, out) of each Llama projection; k and v are num_kv_heads x head_dim wide under grouped-query attention."""
    hidden, inter = config["hidden_size"], config["intermediate_size"]
    head_dim = config.get("head_dim") or hidden // config["num_attention_heads"]
    kv = config.get("num_key_value_heads") or config["num_attention_heads"]
    q_out = config["num_attention_heads"] * head_dim
    return {
        "q_proj": (hidden, q_out), "k_proj": (hidden, kv * head_dim), "v_proj": (hidden, kv * head_dim),
        "o_proj": (q_out, hidden), "gate_proj": (hidden, inter), "up_proj": (hidden, inter), "down_proj": (inter, hidden),
    }


def expected_lora(config: dict, r: int, projections: list[str]) -> int:
    """The acceptance formula: layers x (sum over targeted projections of r x (in + out))."""
    shapes = projection_shapes(config)
    return config["num_hidden_layers"] * sum(r * (shapes[p][0] + shapes[p][1]) for p in projections)


def llama_total(config: dict) -> int:
    """Embeddings, per layer four attention and three MLP matrices plus two norms, final norm, untied head."""
    hidden, vocab = config["hidden_size"], config["vocab_size"]
    layer = sum(i * o for i, o in projection_shapes(config).values()) + 2 * hidden
    return 2 * vocab * hidden + config["num_hidden_layers"] * layer + hidden


@pytest.fixture(scope="module")
def big_config_dirs(tmp_path_factory):
    """Folders that hold nothing but config.json: counting must not need weights (there are none)."""
    folders = {}
    for name, (config, _) in BIG_CONFIGS.items():
        folder = tmp_path_factory.mktemp(name)
        (folder / "config.json").write_text(json.dumps({
            "architectures": ["LlamaForCausalLM"], "model_type": "llama", "tie_word_embeddings": False, **config}))
        folders[name] = folder
    return folders


def tiny_config(model_dir) -> dict:
    return json.loads((model_dir / "config.json").read_text())


@pytest.mark.parametrize("r", [4, 16])
@pytest.mark.parametrize("toggles, projections", TARGET_SETS.values(), ids=TARGET_SETS.keys())
def test_tiny_llama_lora_count_matches_the_formula(tiny_model_dir, toggles, projections, r):
    counts = count_parameters(tiny_spec(tiny_model_dir, lora={"r": r, "targets": toggles}))
    assert counts["trainable"] == expected_lora(tiny_config(tiny_model_dir), r, projections)
    assert counts["all"] == counts["total"] + counts["trainable"]
    assert counts["share"] == counts["trainable"] / counts["all"]
    assert counts["targets"] == sorted(projections)
    assert counts["adapted"] == tiny_config(tiny_model_dir)["num_hidden_layers"] * len(projections)


def test_gqa_key_value_are_narrower_than_query(tiny_model_dir):
    # The tiny model has 4 query heads but 2 kv heads of 16: k/v adapters are r x (64 + 32), not r x (64 + 64).
    config = tiny_config(tiny_model_dir)
    assert config["num_key_value_heads"] < config["num_attention_heads"]
    counts = count_parameters(tiny_spec(tiny_model_dir, lora={"r": 8, "targets": ["key", "value"]}))
    assert counts["trainable"] == 2 * 2 * 8 * (64 + 32)


def test_counts_equal_the_real_model_and_real_peft(tiny_model_dir):
    """The meta-device count is what loading the weights and wrapping them for real gives."""
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    from core.methods import METHODS

    spec = tiny_spec(tiny_model_dir, lora={"r": 8, "targets": ["all-linear"]})
    counts = count_parameters(spec)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert model.config.tie_word_embeddings  # so the total below shows tied weights counted once
    assert counts["total"] == sum(p.numel() for p in model.parameters())
    peft_model = get_peft_model(model, METHODS["lora"].peft_config(spec, model))
    trainable, everything = peft_model.get_nb_trainable_parameters()
    assert (counts["trainable"], counts["all"]) == (trainable, everything)


def test_config_only_folder_gives_the_same_numbers(tiny_model_dir, tmp_path):
    only_config = tmp_path / "config-only"
    only_config.mkdir()
    (only_config / "config.json").write_text((tiny_model_dir / "config.json").read_text())
    job = {"lora": {"r": 4, "targets": ["query", "value", "mlp"]}}
    assert count_parameters(tiny_spec(only_config, **job)) == count_parameters(tiny_spec(tiny_model_dir, **job))


@pytest.mark.parametrize("name", BIG_CONFIGS)
def test_7b_class_model_from_config_alone(big_config_dirs, name):
    for module in ("peft", "transformers"):  # imports are not what is timed
        importlib.import_module(module)

    config, published_total = BIG_CONFIGS[name]
    assert llama_total(config) == published_total
    started = time.perf_counter()
    counts = count_parameters(tiny_spec(big_config_dirs[name], lora={"r": 16, "targets": ["all-linear"]}))
    elapsed = time.perf_counter() - started
    assert counts["total"] == published_total
    assert counts["trainable"] == expected_lora(config, 16, TARGET_SETS["all-linear"][1])
    assert elapsed < 5, f"counting a {name} config took {elapsed:.1f}s"


@pytest.mark.parametrize("toggles, projections", TARGET_SETS.values(), ids=TARGET_SETS.keys())
def test_7b_lora_count_matches_the_formula(big_config_dirs, toggles, projections):
    config = BIG_CONFIGS["llama3-8b"][0]
    counts = count_parameters(tiny_spec(big_config_dirs["llama3-8b"], lora={"r": 8, "targets": toggles}))
    assert counts["trainable"] == expected_lora(config, 8, projections)


def test_head_target_adds_r_x_hidden_plus_vocab(big_config_dirs):
    config = BIG_CONFIGS["llama2-7b"][0]
    counts = count_parameters(tiny_spec(big_config_dirs["llama2-7b"], lora={"r": 8, "targets": ["query", "head"]}))
    head = 8 * (config["hidden_size"] + config["vocab_size"])
    assert counts["trainable"] == expected_lora(config, 8, ["q_proj"]) + head


def test_unknown_architecture_is_a_readable_error(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "no-such-architecture"}))
    with pytest.raises(ParamCountError, match="config"):
        count_parameters(tiny_spec(tmp_path))


def app_params(job, *overrides: str) -> subprocess.CompletedProcess:
    sets = [arg for pair in overrides for arg in ("--set", pair)]
    return subprocess.run([sys.executable, "app.py", "params", str(job), *sets],
                          cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)


def test_cli_prints_the_same_numbers(tiny_model_dir, tmp_path):
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump(tiny_job(tiny_model_dir)))
    result = app_params(job, "lora.r=16", "lora.targets=[query,value]")
    assert result.returncode == 0, result.stderr[-3000:]
    counts = count_parameters(tiny_spec(tiny_model_dir, lora={"r": 16, "targets": ["query", "value"]}))
    assert f"base model: {counts['total']:,} parameters" in result.stdout
    assert (f"trainable params: {counts['trainable']:,} || all params: {counts['all']:,} "
            f"|| trainable%: {100 * counts['share']:.4f}") in result.stdout
    assert "targets:    q_proj, v_proj" in result.stdout


def test_cli_quickstart_matches_peft_on_the_bundled_model():
    # The numbers PEFT's print_trainable_parameters gives in a real quickstart run's train.log.
    result = app_params(PROJECT_ROOT / "presets" / "quickstart.yaml")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "trainable params: 4,884,480 || all params: 139,399,488 || trainable%: 3.5039" in result.stdout


def test_cli_refuses_an_invalid_job(tmp_path):
    job = tmp_path / "job.yaml"
    job.write_text("lora:\n  r: 0\n")
    result = app_params(job)
    assert result.returncode == 2
    assert "lora.r: 0 is below the minimum 1" in result.stderr


def test_train_tab_line_in_both_languages_and_on_a_bad_field(tiny_model_dir):
    from webui.train_tab import param_count_text

    data = tiny_job(tiny_model_dir, lora={"r": 4, "targets": ["query", "value"]})
    counts = count_parameters(tiny_spec(tiny_model_dir, lora={"r": 4, "targets": ["query", "value"]}))
    english = param_count_text(data, "en")
    assert english.startswith(f"Trainable: {counts['trainable']:,} of {counts['all']:,} parameters")
    assert f"({100 * counts['share']:.4f}%)" in english
    assert param_count_text(data, "zh").startswith(f"可训练参数：{counts['trainable']:,} / {counts['all']:,}")
    bad = param_count_text(tiny_job(tiny_model_dir, lora={"r": 0}), "en")
    assert bad.startswith("Parameters not counted:") and "lora.r" in bad


def test_adalora_count_does_not_depend_on_a_step_count(tiny_model_dir):
    """A valid 5,000-step AdaLoRA job whose warm-up and final phases add up past 1,000 steps is counted, and the
    count is the one any schedule gives: the schedule changes no shape."""
    schedules = [{"tinit": 0, "tfinal": 0}, {"tinit": 2500, "tfinal": 1500}, {"tinit": 4998, "tfinal": 1}]
    counts = [count_parameters(tiny_spec(tiny_model_dir, method="adalora", train={"max_steps": 5000},
                                         adalora={"init_r": 6, "target_r": 2, **schedule}))
              for schedule in schedules]
    assert counts[0] == counts[1] == counts[2]
    # Per adapted matrix: A (r x in), E (r), B (out x r); 2 layers x (q, k, v, o, gate, up, down).
    config = tiny_config(tiny_model_dir)
    shapes = projection_shapes(config)
    assert counts[0]["trainable"] == config["num_hidden_layers"] * sum(6 * (i + 1 + o) for i, o in shapes.values())
    # With epochs, the step count is known only at launch; the count does not need it either.
    spec = tiny_spec(tiny_model_dir, method="adalora", train={"max_steps": 0},
                     adalora={"init_r": 6, "target_r": 2, "tinit": 3000, "tfinal": 3000})
    assert count_parameters(spec) == counts[0]


def test_params_reads_a_job_whose_model_is_gone_as_a_model_path_error(tmp_path):
    # Parsing no longer looks for the model; counting needs its config.json and says which field is wrong.
    with pytest.raises(ParamCountError, match="model.path"):
        count_parameters(tiny_spec(tmp_path / "gone"))
