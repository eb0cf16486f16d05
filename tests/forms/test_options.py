"""Options declared once: export and generation options are built from plain values with the job spec's
checks, every bad value named; their defaults are the ones every front end shows."""
from __future__ import annotations

import pytest

from core.chat.options import GenerationOptions
from core.export.options import ExportError, ExportOptions, check_options, default_out, resolve
from core.options import OptionsError, build_options, declared_fields, defaults


def test_generation_defaults_are_greedy_with_one_length():
    options = build_options(GenerationOptions, {})
    assert options.temperature == 0 and not options.sampling and options.repetition_penalty == 1.0
    assert defaults(GenerationOptions)["max_new_tokens"] == GenerationOptions().max_new_tokens == 128


def test_values_are_coerced_and_none_keeps_the_default():
    options = build_options(GenerationOptions, {"max_new_tokens": "64", "temperature": 0.7, "seed": None})
    assert options.max_new_tokens == 64 and options.temperature == 0.7 and options.seed == 0


def test_every_bad_value_is_named_at_once():
    with pytest.raises(OptionsError) as caught:
        build_options(GenerationOptions, {"temperature": -1, "top_k": "many", "max_new_token": 5})
    problems = dict(caught.value.problems)
    assert problems["temperature"].startswith("-1.0 is below the minimum 0.0")
    assert "expected a whole number" in problems["top_k"]
    assert problems["max_new_token"] == "unknown option (did you mean 'max_new_tokens'?)"


def test_export_choices_and_multi_choices_are_checked():
    with pytest.raises(OptionsError) as caught:
        build_options(ExportOptions, {"dtype": "float8", "gguf": ["f16", "q4"]})
    problems = dict(caught.value.problems)
    assert problems["dtype"] == "'float8' is not one of: float32, bfloat16, float16"
    assert problems["gguf"] == "'q4' is not one of: f16, q8_0"
    assert [f.name for f in declared_fields(ExportOptions)] == ["run", "out", "shard_size", "dtype", "gguf", "ollama", "system"]


def test_export_problems_name_their_option(tmp_path):
    with pytest.raises(ExportError) as caught:
        check_options(ExportOptions(run=str(tmp_path), out=str(tmp_path / "o"), shard_size="big"))
    assert caught.value.option == "shard_size" and str(caught.value).startswith("shard_size: 'big' is not a size")
    with pytest.raises(ExportError) as caught:
        check_options(ExportOptions(run="", out=str(tmp_path / "o")))
    assert caught.value.option == "run"


def test_default_export_folder_never_collides(tmp_path):
    first = default_out(tmp_path, "run-1")
    assert first == tmp_path / "exports" / "run-1-merged"
    first.mkdir(parents=True)
    assert default_out(tmp_path, "run-1") == first  # an empty folder may still be used
    (first / "model.safetensors").write_text("x")
    assert default_out(tmp_path, "run-1") == tmp_path / "exports" / "run-1-merged-2"


def test_resolve_finds_a_run_id_and_fills_the_folder(tmp_path):
    (tmp_path / "runs" / "20250101-lora-abcd").mkdir(parents=True)
    options = resolve(ExportOptions(run="20250101-lora-abcd"), tmp_path)
    assert options.run == str(tmp_path / "runs" / "20250101-lora-abcd")
    assert options.out == str(tmp_path / "exports" / "20250101-lora-abcd-merged")
    given = resolve(ExportOptions(run="20250101-lora-abcd", out=str(tmp_path / "mine")), tmp_path)
    assert given.out == str(tmp_path / "mine")
