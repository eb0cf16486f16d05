"""The job spec: defaults are valid, YAML round-trips, overrides apply, and every error names its field."""
from __future__ import annotations

from pathlib import Path

import pytest

from core.paths import PRESETS_DIR
from core.spec import JobSpec, SpecError, dump_spec, load_spec, parse_overrides, parse_yaml_text, spec_from_dict


def problems_of(data) -> dict[str, str]:
    """Validate `data`, expecting failure; return {field: message}."""
    with pytest.raises(SpecError) as caught:
        spec_from_dict(data)
    return dict(caught.value.problems)


def test_defaults_validate():
    # An empty job means "all defaults"; they must be a runnable job (bundled model, identity data).
    spec = spec_from_dict({})
    assert spec.to_dict() == JobSpec().to_dict()
    assert spec.method == "lora" and spec.model.path == "SmolLM2-135M-Instruct"


def test_yaml_round_trip(tmp_path):
    # job.yaml is written with dump_spec and replayed with load_spec: nothing may change on the way.
    spec = spec_from_dict({"lora": {"r": 16, "targets": ["query", "value"]}, "train": {"learning_rate": 1e-3},
                           "data": {"name": "名字", "train_on_prompt": True}})
    path = tmp_path / "job.yaml"
    path.write_text(dump_spec(spec), encoding="utf-8")
    assert load_spec(str(path)).to_dict() == spec.to_dict()


def test_overrides_are_parsed_and_applied():
    nested = parse_overrides(["lora.r=16", "train.learning_rate=1e-3", "lora.targets=[query,value]"])
    spec = spec_from_dict(nested)
    assert spec.lora.r == 16
    assert spec.train.learning_rate == pytest.approx(1e-3) and isinstance(spec.train.learning_rate, float)
    assert spec.lora.targets == ["query", "value"]


def test_overrides_win_over_the_yaml_file(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text("lora:\n  r: 8\n  alpha: 4\n")
    spec = load_spec(str(path), ["lora.r=32"])
    assert (spec.lora.r, spec.lora.alpha) == (32, 4)  # the override replaces one key, not the whole section


def test_unknown_key_names_field_and_suggests():
    assert problems_of({"lora": {"alpah": 3}}) == {"lora.alpah": "unknown key (did you mean 'alpha'?)"}


def test_unknown_section_names_it_and_suggests():
    problems = problems_of({"lroa": {"r": 4}})
    assert "unknown section" in problems["lroa"] and "'lora'" in problems["lroa"]


def test_out_of_range_names_the_allowed_range():
    assert "1 to 1024" in problems_of({"lora": {"r": 0}})["lora.r"]
    assert "maximum 1.0" in problems_of({"train": {"learning_rate": 5}})["train.learning_rate"]


def test_wrong_type_names_field_and_expectation():
    assert "whole number" in problems_of({"lora": {"r": "abc"}})["lora.r"]
    assert "true or false" in problems_of({"data": {"train_on_prompt": "maybe"}})["data.train_on_prompt"]


def test_bad_choice_lists_the_choices():
    message = problems_of({"train": {"lr_scheduler": "foo"}})["train.lr_scheduler"]
    assert "'foo'" in message and "cosine" in message and "linear" in message
    assert "'quary'" in problems_of({"lora": {"targets": ["query", "quary"]}})["lora.targets"]


def test_malformed_yaml_gives_line_number(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("lora:\n  r: 8\n bad: [\n")
    with pytest.raises(SpecError) as caught:
        load_spec(str(path))
    assert "line 3" in str(caught.value) and str(path) in str(caught.value)
    with pytest.raises(SpecError, match="must hold a mapping"):
        parse_yaml_text("- just\n- a list\n")


def test_nonexistent_model_path_is_a_model_path_error(tmp_path):
    problems = problems_of({"model": {"path": str(tmp_path / "no-such-model")}})
    assert list(problems) == ["model.path"] and "not found" in problems["model.path"]


def test_folder_without_config_is_refused(tmp_path):
    assert "config.json" in problems_of({"model": {"path": str(tmp_path)}})["model.path"]


def test_several_problems_are_reported_together():
    # One round of fixes should be enough: every field problem comes back in one error.
    problems = problems_of({"lora": {"r": 0, "alpah": 1}, "train": {"batch_size": "x"}, "lroa": {}})
    assert set(problems) == {"lora.r", "lora.alpah", "train.batch_size", "lroa"}


def test_malformed_override_is_refused():
    with pytest.raises(SpecError, match="section.key"):
        parse_overrides(["lora.r"])


PRESETS = sorted(PRESETS_DIR.glob("*.yaml"))


def test_quickstart_preset_exists():
    assert PRESETS_DIR / "quickstart.yaml" in PRESETS


@pytest.mark.parametrize("preset", PRESETS, ids=[p.stem for p in PRESETS])
def test_every_preset_validates(preset: Path):
    spec = load_spec(str(preset))
    # A preset is a partial spec: every value it sets must survive validation unchanged.
    data = parse_yaml_text(preset.read_text())
    for section, values in data.items():
        for key, value in (values.items() if isinstance(values, dict) else [(None, values)]):
            dotted = f"{section}.{key}" if key else section
            assert spec.get(dotted) == value, dotted
