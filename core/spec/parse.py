"""Parse a job: plain data (YAML, CLI overrides, UI form) into a JobSpec.

Parsing checks keys, types, bounds, the runtime layout's rules and each method's own rules, and nothing outside
the spec: no file, device or library is looked at. So a run's job.yaml opens wherever the run is
read (chat, export, the Train tab attaching, `params`, the trainer), even when its dataset is gone
or its device is absent; what needs the world is checked at Start (launch.py).

Every problem names the dotted field it belongs to and what would be allowed,
and all problems are reported together so the user fixes them in one go.
"""
from __future__ import annotations

from typing import Any

import yaml

from core.spec.schema import JobSpec, method_choices, section_types, spec_fields, used_sections
from core.spec.values import bounds_problem, brief, coerce, suggest
from core.spec.yaml_text import MAX_BYTES, YamlProblem, is_plain, load_yaml


class SpecError(ValueError):
    """One or more problems with a job spec; `problems` is a list of (field, message)."""

    def __init__(self, problems: list[tuple[str, str]]):
        self.problems = problems
        super().__init__("\n".join(f"{key}: {msg}" if key else msg for key, msg in problems))


def spec_from_dict(data: dict[str, Any] | None) -> JobSpec:
    """Parse nested plain data into a spec; raise SpecError naming every problem.

    Sections of methods other than the picked one are ignored with a note in `spec.notes` (an old
    job.yaml held every method's sections; a form sends them all); any other unknown section or key
    is an error.
    """
    from core.methods import METHODS

    data = dict(data or {})
    problems: list[tuple[str, str]] = []
    spec = JobSpec()
    types = section_types()

    method = data.pop("method", spec.method)
    if not isinstance(method, str) or method not in method_choices():
        problems.append(("method", f"{brief(method)} is not one of: {', '.join(method_choices())}"))
        used = set(types)  # the method is unknown: check every section, so its other problems show too
    else:
        spec.method = method
        used = set(used_sections(method))

    for section_name, values in data.items():
        if section_name not in types:
            name = brief(section_name) if not isinstance(section_name, str) or len(section_name) > 60 else section_name
            problems.append((name, "unknown section" + suggest(section_name, list(types) + ["method"])))
            continue
        if section_name not in used:
            spec.notes.append(f"ignored section '{section_name}': method {spec.method} does not read it")
            continue
        if values is None:
            continue
        if not isinstance(values, dict):
            problems.append((section_name, f"expected a mapping of fields, got {type(values).__name__}"))
            continue
        fields = {f.name: f for f in spec_fields(types[section_name])}
        section = spec.sections[section_name]
        for key, raw in values.items():
            dotted = f"{section_name}.{key if isinstance(key, str) and len(key) <= 60 else brief(key)}"
            if key not in fields:
                problems.append((dotted, "unknown key" + suggest(key, fields)))
                continue
            try:
                value = coerce(raw, fields[key])
            except ValueError as err:
                problems.append((dotted, str(err)))
                continue
            setattr(section, key, value)

    problems.extend(_bounds_problems(spec, used))
    problems.extend(_runtime_problems(spec, {key for key, _ in problems}))
    if spec.method == method:
        # The method's own rules run even when fields are wrong, so the user sees every problem at once;
        # a field reported above holds its default here, and is not reported twice.
        reported = {key for key, _ in problems}
        _reset_fields(spec, reported)
        problems.extend(_first_per_field(METHODS[method].check(spec), reported))
    if problems:
        raise SpecError(problems)
    return spec


def _bounds_problems(spec: JobSpec, sections: set[str]) -> list[tuple[str, str]]:
    problems = []
    for section_name, section in spec.sections.items():
        if section_name not in sections:
            continue
        for f in spec_fields(type(section)):
            msg = bounds_problem(getattr(section, f.name), f)
            if msg:
                problems.append((f"{section_name}.{f.name}", msg))
    return problems


def _runtime_problems(spec: JobSpec, reported: set[str]) -> list[tuple[str, str]]:
    """The runtime section's own rules (device text, processes, nodes, strategy: core/runtime/layout.py), once
    its fields are each within bounds."""
    from core.runtime.layout import layout_problems

    if any(key.startswith("runtime.") for key in reported):
        return []
    return layout_problems(spec)


def _reset_fields(spec: JobSpec, dotted: set[str]) -> None:
    """Put the named fields back to their defaults (on a spec that is about to be refused anyway)."""
    fresh = JobSpec()
    for name in dotted:
        section, _, key = name.partition(".")
        if key and section in spec.sections and hasattr(spec.sections[section], key):
            setattr(spec.sections[section], key, getattr(fresh.sections[section], key))


def _first_per_field(problems: list[tuple[str, str]], reported: set[str]) -> list[tuple[str, str]]:
    """Problems whose field has none yet (a method and its base may both refuse the same field)."""
    kept = []
    for key, message in problems:
        if key not in reported:
            reported.add(key)
            kept.append((key, message))
    return kept


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """Turn ['lora.r=16', 'train.epochs=2'] into nested data.

    A value is read as YAML, so numbers, true/false and [a, b] lists work, but it must come out a plain
    value or a list of them: a mapping (`{{author}}` is one in YAML), a tag or a broken list is refused
    naming the key, with the hint to quote text."""
    nested: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise SpecError([(brief(pair), "an override must look like section.key=value")])
        dotted, raw = pair.split("=", 1)
        dotted = dotted.strip()
        value = _override_value(dotted, raw)
        if dotted == "method":
            nested["method"] = value
            continue
        if "." not in dotted:
            raise SpecError([(dotted, "an override must name section.key, e.g. lora.r=16")])
        section, key = dotted.split(".", 1)
        nested.setdefault(section, {})[key] = value
    return nested


def _override_value(dotted: str, raw: str) -> Any:
    quote_hint = f"; to give text, put it in quotes inside the value, e.g. --set '{dotted}=\"...\"'"
    if not raw.strip():
        return ""
    try:
        value = load_yaml(raw, source=f"the value of {dotted}")
    except YamlProblem as err:
        raise SpecError([(dotted, f"{err}{quote_hint}")]) from None
    if not is_plain(value):
        what = "a mapping" if isinstance(value, dict) else brief(value)
        raise SpecError([(dotted, f"expected a plain value or a list of plain values, got {what}{quote_hint}")])
    return value


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
        with open(path, "rb") as fh:
            raw = fh.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise SpecError([("", f"job file not found: {path}")]) from None
    except IsADirectoryError:
        raise SpecError([("", f"{path} is a folder; give a job file (YAML), e.g. presets/quickstart.yaml")]) from None
    except OSError as err:
        raise SpecError([("", f"job file {path} cannot be read: {err.strerror}")]) from None
    if len(raw) > MAX_BYTES:
        raise SpecError([("", f"{path} is larger than {MAX_BYTES:,} bytes; a job file is a few kilobytes of YAML")])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise SpecError([("", f"{path} is not UTF-8 text ({err.reason} at byte {err.start})")]) from None
    return parse_yaml_text(text, source=path)


def parse_yaml_text(text: str, source: str = "job") -> dict[str, Any]:
    try:
        data = load_yaml(text, source)
    except YamlProblem as err:
        raise SpecError([("", str(err))]) from None
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
