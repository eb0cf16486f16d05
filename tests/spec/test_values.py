"""Every number a job or an option holds is finite and bounded, and YAML is read within limits: checked
over every declared field, so a field added later is covered without a new test."""
from __future__ import annotations

import math

import pytest

from core.chat.options import GenerationOptions
from core.export.options import ExportOptions
from core.options import OptionsError, build_options
from core.spec import SpecError, parse_overrides, parse_yaml_text, spec_from_dict
from core.spec.schema import section_types, spec_fields, used_sections
from core.spec.yaml_text import MAX_NODES, YamlProblem, load_yaml

OPTION_CLASSES = [GenerationOptions, ExportOptions]


def numeric_spec_fields():
    for section, cls in section_types().items():
        for f in spec_fields(cls):
            if f.type in ("int", "float") and not f.metadata.get("choices"):
                yield section, f


def method_for(section: str) -> str:
    from core.methods import METHODS

    return next(name for name in METHODS if section in used_sections(name))


def test_every_number_field_declares_both_bounds():
    unbounded = [f"{section}.{f.name}" for section, f in numeric_spec_fields()
                 if f.metadata["lo"] is None or f.metadata["hi"] is None]
    unbounded += [f"{cls.__name__}.{f.name}" for cls in OPTION_CLASSES for f in spec_fields(cls)
                  if f.type in ("int", "float") and (f.metadata["lo"] is None or f.metadata["hi"] is None)]
    assert unbounded == []


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, "nan", "Infinity", "1e999"])
def test_nan_and_infinity_are_refused_in_every_number_field_of_the_spec(bad):
    for section, f in numeric_spec_fields():
        with pytest.raises(SpecError) as caught:
            spec_from_dict({"method": method_for(section), section: {f.name: bad}})
        message = dict(caught.value.problems)[f"{section}.{f.name}"]
        assert "finite" in message or "whole number" in message, (section, f.name, message)


@pytest.mark.parametrize("cls", OPTION_CLASSES, ids=lambda c: c.__name__)
def test_nan_is_refused_in_every_number_option(cls):
    for f in spec_fields(cls):
        if f.type not in ("int", "float"):
            continue
        with pytest.raises(OptionsError) as caught:
            build_options(cls, {f.name: float("nan")})
        assert "finite" in dict(caught.value.problems)[f.name]


@pytest.mark.parametrize("value", [None])
def test_an_empty_number_is_refused_not_defaulted(value):
    for section, f in numeric_spec_fields():
        with pytest.raises(SpecError) as caught:
            spec_from_dict({"method": method_for(section), section: {f.name: value}})
        assert "is empty" in dict(caught.value.problems)[f"{section}.{f.name}"]


def test_whole_numbers_written_in_exponent_form_are_read():
    spec = spec_from_dict(parse_overrides(["train.max_steps=1e3", "train.save_steps=2.0e2"]))
    assert (spec.train.max_steps, spec.train.save_steps) == (1000, 200)


def test_a_few_anchors_and_merge_keys_still_work():
    # Aliases are limited, not banned: a file that reuses a list or merges a base mapping parses.
    data = parse_yaml_text("base: &b {r: 8, alpha: 16}\nlora:\n  <<: *b\n  r: 4\n"
                           "x: &t [query, value]\ny: *t\n")
    assert data["lora"] == {"r": 4, "alpha": 16} and data["y"] == ["query", "value"]


def test_alias_expansion_is_counted_without_expanding():
    levels = ['a: &a [x,x,x,x,x,x,x,x,x,x]'] + [f"{chr(98 + i)}: &{chr(98 + i)} [{','.join([f'*{chr(97 + i)}'] * 9)}]"
                                               for i in range(5)]
    with pytest.raises(YamlProblem) as caught:
        load_yaml("\n".join(levels), "bomb.yaml")
    assert f"more than {MAX_NODES:,} values" in str(caught.value)
    assert load_yaml("\n".join(levels[:4]), "ok.yaml")["d"][0][0][0] == ["x"] * 10  # 7,290 values: fine


def test_overrides_may_be_lists_of_plain_values_and_quoted_text():
    nested = parse_overrides(['data.name="{{author}}"', "lora.targets=[query, value]", "train.seed=7"])
    assert nested == {"data": {"name": "{{author}}"}, "lora": {"targets": ["query", "value"]}, "train": {"seed": 7}}
