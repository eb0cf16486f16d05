"""Options dataclasses declared once, the way the job spec is: fields made with `opt()` carry their default,
help, bounds and choices, and everything else (CLI flags, UI controls, validation) reads them.

`build_options` turns plain values (parsed flags, form values, a JSON request) into a checked instance;
every problem names the option it belongs to, and all of them are reported together.
"""
from __future__ import annotations

import dataclasses
from typing import Any

from core.spec.schema import spec_fields
from core.spec.values import bounds_problem, coerce, suggest


class OptionsError(ValueError):
    """One or more bad option values; `problems` is a list of (option name, message)."""

    def __init__(self, problems: list[tuple[str, str]]):
        self.problems = problems
        super().__init__("\n".join(f"{name}: {message}" for name, message in problems))


def declared_fields(cls) -> list[dataclasses.Field]:
    """The options a user sets (those declared with `opt()`), in declaration order."""
    return spec_fields(cls)


def defaults(cls) -> dict[str, Any]:
    """Each declared option's default value."""
    instance = cls()
    return {f.name: getattr(instance, f.name) for f in declared_fields(cls)}


def build_options(cls, values: dict[str, Any] | None = None, **more):
    """An instance of `cls` from plain values; None leaves an option at its default (an emptied number box).

    Raises OptionsError naming every option that is unknown, of the wrong type or out of its bounds.
    """
    values = {**(values or {}), **more}
    fields = {f.name: f for f in dataclasses.fields(cls)}
    declared = {f.name for f in declared_fields(cls)}
    problems: list[tuple[str, str]] = []
    kwargs: dict[str, Any] = {}
    for name, raw in values.items():
        if name not in fields:
            problems.append((name, "unknown option" + suggest(name, fields)))
            continue
        if raw is None:
            continue
        if name not in declared:  # an internal knob (no opt() metadata): taken as given
            kwargs[name] = raw
            continue
        try:
            value = coerce(raw, fields[name])
        except ValueError as err:
            problems.append((name, str(err)))
            continue
        problem = bounds_problem(value, fields[name])
        if problem:
            problems.append((name, problem))
            continue
        kwargs[name] = value
    if problems:
        raise OptionsError(problems)
    return cls(**kwargs)


def allowed_values(f: dataclasses.Field) -> str:
    """What an option accepts, in words: its choices or its range; empty when anything of its type goes."""
    meta = f.metadata
    if meta.get("choices"):
        return ("any of: " if meta.get("multi") else "one of: ") + ", ".join(map(str, meta["choices"]))
    lo, hi = meta.get("lo"), meta.get("hi")
    if lo is not None and hi is not None:
        return f"{lo:g} to {hi:g}"
    if lo is not None:
        return f"at least {lo:g}"
    if hi is not None:
        return f"at most {hi:g}"
    return ""
