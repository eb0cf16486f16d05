"""Build a JobSpec from plain data (YAML, CLI overrides, UI form) and check it.

Every problem names the dotted field it belongs to and what would be allowed,
and all problems are reported together so the user fixes them in one go.
"""
from __future__ import annotations

import dataclasses
import difflib
from typing import Any

import yaml

from core.spec.schema import JobSpec, method_choices, section_types, spec_fields


class SpecError(ValueError):
    """One or more problems with a job spec; `problems` is a list of (field, message)."""

    def __init__(self, problems: list[tuple[str, str]]):
        self.problems = problems
        super().__init__("\n".join(f"{key}: {msg}" if key else msg for key, msg in problems))


def _suggest(word: str, options) -> str:
    close = difflib.get_close_matches(word, list(options), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


# Field annotations are strings (postponed evaluation); these are the ones the schema uses.
_FIELD_TYPES = {"int": int, "float": float, "bool": bool, "str": str, "list[str]": list}


def _coerce(value: Any, f: dataclasses.Field) -> Any:
    """Turn a YAML/CLI/UI value into the field's type, or raise ValueError naming what was expected."""
    target = _FIELD_TYPES[f.type] if isinstance(f.type, str) else f.type
    if target is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "on", "1", "false", "no", "off", "0"):
            return value.lower() in ("true", "yes", "on", "1")
        raise ValueError(f"expected true or false, got {value!r}")
    if target is int:
        if isinstance(value, bool):
            raise ValueError(f"expected a whole number, got {value!r}")
        if isinstance(value, float) and value.is_integer():
            return int(value)
        try:
            return int(str(value).strip())
        except ValueError:
            raise ValueError(f"expected a whole number, got {value!r}") from None
    if target is float:
        if isinstance(value, bool):
            raise ValueError(f"expected a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ValueError(f"expected a number, got {value!r}") from None
    if target is list:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"expected a list, got {value!r}")
        return [str(v) for v in value]
    if isinstance(value, bool) and {"on", "off"} <= set(f.metadata.get("choices") or ()):
        return "on" if value else "off"  # a switch that gained an auto setting still takes true/false
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        raise ValueError(f"expected text, got {type(value).__name__}")
    return str(value)


def _check_bounds(value: Any, f: dataclasses.Field) -> str | None:
    meta = f.metadata
    lo, hi, choices = meta.get("lo"), meta.get("hi"), meta.get("choices")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if lo is not None and value < lo:
            return f"{value} is below the minimum {lo}" + (f" (allowed: {lo} to {hi})" if hi is not None else "")
        if hi is not None and value > hi:
            return f"{value} is above the maximum {hi}" + (f" (allowed: {lo} to {hi})" if lo is not None else "")
    if choices:
        items = value if isinstance(value, list) else [value]
        bad = [v for v in items if v not in choices]
        if bad:
            return f"{bad[0]!r} is not one of: {', '.join(map(str, choices))}"
    return None


def spec_from_dict(data: dict[str, Any] | None) -> JobSpec:
    """Build and validate a spec from nested plain data; unknown keys are errors."""
    data = dict(data or {})
    problems: list[tuple[str, str]] = []
    spec = JobSpec()
    types = section_types()

    method = data.pop("method", spec.method)
    if method not in method_choices():
        problems.append(("method", f"{method!r} is not one of: {', '.join(method_choices())}"))
    else:
        spec.method = method

    for section_name, values in data.items():
        if section_name not in types:
            problems.append((section_name, "unknown section" + _suggest(section_name, list(types) + ["method"])))
            continue
        if values is None:
            continue
        if not isinstance(values, dict):
            problems.append((section_name, f"expected a mapping of fields, got {type(values).__name__}"))
            continue
        fields = {f.name: f for f in spec_fields(types[section_name])}
        section = spec.sections[section_name]
        for key, raw in values.items():
            dotted = f"{section_name}.{key}"
            if key not in fields:
                problems.append((dotted, "unknown key" + _suggest(key, fields)))
                continue
            try:
                value = _coerce(raw, fields[key])
            except ValueError as err:
                problems.append((dotted, str(err)))
                continue
            setattr(section, key, value)

    problems.extend(_bounds_problems(spec))
    # Checks of the outside world (model folder, device) run even when fields are wrong, so the
    # user sees every problem at once; fields that failed above still hold their defaults here.
    problems.extend(_cross_field_problems(spec, skip={key for key, _ in problems}))
    if problems:
        raise SpecError(problems)
    return spec


def _bounds_problems(spec: JobSpec) -> list[tuple[str, str]]:
    problems = []
    for section_name, section in spec.sections.items():
        for f in spec_fields(type(section)):
            msg = _check_bounds(getattr(section, f.name), f)
            if msg:
                problems.append((f"{section_name}.{f.name}", msg))
    return problems


def _cross_field_problems(spec: JobSpec, skip: set[str]) -> list[tuple[str, str]]:
    """Checks that involve more than one field, or the world outside the spec (files, devices).

    `skip` holds fields already reported, so a bad value is not reported twice.
    """
    from core.methods import hook
    from core.models.source import ModelSourceError, resolve_model

    problems: list[tuple[str, str]] = []
    if "model.path" not in skip:
        try:
            resolve_model(spec.model.path)
        except ModelSourceError as err:
            problems.append(("model.path", str(err)))
    if "data.dataset" not in skip and "data.registry" not in skip:
        problems.extend(_data_problems(spec))
    if spec.runtime.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            problems.append(("runtime.device", "cuda was asked for but no CUDA GPU is visible; use auto or cpu"))
    problems.extend(p for p in hook(spec.method, "check")(spec) if p[0] not in skip)
    return problems


def _data_problems(spec: JobSpec) -> list[tuple[str, str]]:
    """Read every dataset now, so bad data is refused before a run folder exists, naming each bad line."""
    from core.data.source import check_datasets

    problems = []
    for report in check_datasets(spec.data.dataset, spec.data.registry):
        if not report.usable:
            problems.append(("data.dataset", "\n".join(report.lines())))
    return problems


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """Turn ['lora.r=16', 'train.epochs=2'] into nested data; values are parsed as YAML scalars."""
    nested: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise SpecError([(pair, "an override must look like section.key=value")])
        dotted, raw = pair.split("=", 1)
        value = yaml.safe_load(raw) if raw.strip() else ""
        if dotted == "method":
            nested["method"] = value
            continue
        if "." not in dotted:
            raise SpecError([(dotted, "an override must name section.key, e.g. lora.r=16")])
        section, key = dotted.split(".", 1)
        nested.setdefault(section, {})[key] = value
    return nested


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in base.items()}
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = {**out[key], **value}
        else:
            out[key] = value
    return out


def read_yaml(path: str) -> dict[str, Any]:
    """Read a YAML job file; syntax errors name the file, line and column."""
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except FileNotFoundError:
        raise SpecError([("", f"job file not found: {path}")]) from None
    except UnicodeDecodeError as err:
        raise SpecError([("", f"{path} is not UTF-8 text ({err.reason} at byte {err.start})")]) from None
    return parse_yaml_text(text, source=path)


def parse_yaml_text(text: str, source: str = "job") -> dict[str, Any]:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err)
        raise SpecError([("", f"malformed YAML in {source}{where}: {problem}")]) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SpecError([("", f"{source} must hold a mapping of sections, got {type(data).__name__}")])
    return data


def load_spec(path: str | None = None, overrides: list[str] | None = None) -> JobSpec:
    data = read_yaml(path) if path else {}
    return spec_from_dict(merge(data, parse_overrides(overrides or [])))


def dump_spec(spec: JobSpec) -> str:
    return yaml.safe_dump(spec.to_dict(), sort_keys=False, allow_unicode=True)
