"""One field's value: coerced to its declared type and checked against its bounds and choices.

The job spec's parser and every options declaration (export, generation) use these, so a spec field
and an option accept the same values and word their refusals the same way.
"""
from __future__ import annotations

import dataclasses
import difflib
from typing import Any


def suggest(word: str, options) -> str:
    close = difflib.get_close_matches(word, list(options), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


# Field annotations are strings (postponed evaluation); these are the ones the schema uses.
_FIELD_TYPES = {"int": int, "float": float, "bool": bool, "str": str, "list[str]": list}


def coerce(value: Any, f: dataclasses.Field) -> Any:
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


def bounds_problem(value: Any, f: dataclasses.Field) -> str | None:
    """Why `value` is outside the field's bounds or choices, or None when it is allowed."""
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
