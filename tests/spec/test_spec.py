"""Parsing the job spec: defaults are valid, YAML round-trips, overrides apply, every error names its field,
job.yaml holds only what the run's method reads, and another method's section is ignored with a note."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from core.methods import METHODS
from core.paths import PRESETS_DIR
from core.spec import (
    JobSpec,
    SpecError,
    check_launch,
    dump_spec,
    load_spec,
    parse_overrides,
    parse_yaml_text,
    spec_from_dict,
)


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


def test_several_problems_are_reported_together():
    # One round of fixes should be enough: every field problem comes back in one error.
    problems = problems_of({"lora": {"r": 0, "alpah": 1}, "train": {"batch_size": "x"}, "lroa": {}})
    assert set(problems) == {"lora.r", "lora.alpah", "train.batch_size", "lroa"}


def test_a_method_and_its_base_refusing_one_field_report_it_once():
    # QDoRA refuses PiSSA as QLoRA does (a quantised base) and as DoRA does: one problem for the field.
    problems = problems_of({"method": "qdora", "lora": {"init": "pissa"}})
    assert list(problems) == ["lora.init"]


def test_a_field_out_of_bounds_does_not_crash_the_method_rules():
    # LongLoRA's rule divides by the ratio; a ratio below its minimum is reported once, not raised as a crash.
    problems = problems_of({"method": "longlora", "longlora": {"group_size_ratio": 0}})
    assert list(problems) == ["longlora.group_size_ratio"] and "minimum" in problems["longlora.group_size_ratio"]


@pytest.mark.parametrize("method", list(METHODS))
def test_job_yaml_holds_the_method_and_only_the_sections_it_reads(method):
    spec = spec_from_dict({"method": method})
    written = yaml.safe_load(dump_spec(spec))
    assert list(written) == ["method", "model", "data", *METHODS[method].SECTIONS, "train", "runtime"]
    # The spec in memory keeps every section (the form switches methods and keeps values); the file does not.
    assert set(spec.sections) > set(written) - {"method"}


def test_lora_job_yaml_has_no_other_methods_sections():
    written = yaml.safe_load(dump_spec(spec_from_dict({"method": "lora"})))
    assert not {"vera", "adalora", "quant", "longlora"} & set(written)
    # A method reads its base's sections, then its own.
    sections = {m: list(METHODS[m].SECTIONS) for m in METHODS if m != "lora"}
    assert sections == {"qlora": ["lora", "quant"], "qdora": ["lora", "quant"], "longlora": ["lora", "longlora"],
                        "dora": ["lora"], "adalora": ["adalora"], "vera": ["vera"]}


def old_style_job(method: str = "lora") -> dict:
    """A job.yaml as the workbench wrote it before it kept only the run's sections: every method's, with
    values a method that does not read them never checked (and a field since renamed)."""
    job = {"method": method}
    for name, section in spec_from_dict({}).sections.items():
        job[name] = {f: v for f, v in vars(section).items()}
    job["vera"]["retired_field"] = 1
    job["adalora"]["target_r"] = job["adalora"]["init_r"] + 4  # out of order, but adalora is not this run's
    return job


def test_old_job_yaml_with_every_section_still_parses_with_a_note(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(old_style_job()))
    spec = load_spec(str(path))
    ignored = {"vera", "adalora", "quant", "longlora"}
    assert spec.method == "lora"
    assert len(spec.notes) == len(ignored) and all(any(f"'{s}'" in n for n in spec.notes) for s in ignored)
    assert all("method lora does not read it" in note for note in spec.notes)
    assert not ignored & set(yaml.safe_load(dump_spec(spec)))  # replaying it writes the new, smaller record


def test_unknown_keys_of_the_methods_own_sections_are_still_errors():
    job = old_style_job()
    job["lora"]["rank"] = 8
    job["bogus"] = {}
    problems = problems_of(job)
    assert problems["lora.rank"].startswith("unknown key") and "unknown section" in problems["bogus"]
    assert "vera.retired_field" not in problems  # another method's section is ignored whole


def test_a_valid_spec_has_no_notes():
    assert spec_from_dict({"method": "qlora", "lora": {"r": 4}, "quant": {"bits": 8}}).notes == []


def test_malformed_override_is_refused():
    with pytest.raises(SpecError, match="section.key"):
        parse_overrides(["lora.r"])


PRESETS = sorted(PRESETS_DIR.glob("*.yaml"))


def test_quickstart_preset_exists():
    assert PRESETS_DIR / "quickstart.yaml" in PRESETS


@pytest.mark.parametrize("preset", PRESETS, ids=[p.stem for p in PRESETS])
def test_every_preset_validates_and_can_start_here(preset: Path):
    spec = load_spec(str(preset))
    check_launch(spec)  # the bundled model and data, on this machine
    # A preset is a partial spec: every value it sets must survive validation unchanged.
    data = parse_yaml_text(preset.read_text())
    for section, values in data.items():
        for key, value in (values.items() if isinstance(values, dict) else [(None, values)]):
            dotted = f"{section}.{key}" if key else section
            assert spec.get(dotted) == value, dotted
