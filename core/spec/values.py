"""One field's value: coerced to its declared type and checked against its bounds and choices.

The job spec's parser and every options declaration (export, generation) use these, so a spec field
and an option accept the same values and word their refusals the same way.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
from typing import Any

SHOWN_CHARS = 80  # a value quoted in a message is cut here: a 25 MB value must not become a 25 MB error


def brief(value: Any) -> str:
    """`value` as a message quotes it: its repr, cut to a few dozen characters."""
    text = repr(value) if not isinstance(value, (dict, list, tuple, set, bytes)) else _brief_container(value)
    return text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS] + f"… ({len(text)} characters)"


def _brief_container(value) -> str:
    # repr() of an aliased YAML structure can be gigabytes; describe it instead of printing it.
    if isinstance(value, bytes):
        return f"{len(value)} bytes of binary data"
    kind = type(value).__name__
    return f"a {kind} of {len(value)} item{'s' if len(value) != 1 else ''}"


def suggest(word: Any, options) -> str:
    close = difflib.get_close_matches(str(word), [str(o) for o in options], n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


# Field annotations are strings (postponed evaluation); these are the ones the schema uses.
_FIELD_TYPES = {"int": int, "float": float, "bool": bool, "str": str, "list[str]": list}


EMPTY = "is empty; enter a value (an emptied box does not fall back to a default)"


def coerce(value: Any, f: dataclasses.Field) -> Any:
    """Turn a YAML/CLI/UI value into the field's type, or raise ValueError naming what was expected.

    Numbers must be finite: NaN or infinity in a learning rate or a dropout trains nothing useful and
    used to end as a "completed" run with an all-NaN adapter. An empty number (YAML `key:` with no
    value, an emptied form box) is refused rather than replaced by the declaration's default: the user
    may have been looking at a preset's value, which the default is not."""
    target = _FIELD_TYPES[f.type] if isinstance(f.type, str) else f.type
    if value is None and target in (bool, int, float):
        raise ValueError(EMPTY)
    if target is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "on", "1", "false", "no", "off", "0"):
            return value.lower() in ("true", "yes", "on", "1")
        raise ValueError(f"expected true or false, got {brief(value)}")
    if target is int:
        if isinstance(value, bool):
            raise ValueError(f"expected a whole number, got {brief(value)}")
        if isinstance(value, float):
            if not math.isfinite(value):
                raise ValueError(f"expected a finite whole number, got {value}")
            if value.is_integer():
                return int(value)
        if isinstance(value, int):
            return value
        if not isinstance(value, str) or len(value) > 40:  # int() of a 10,000-digit string is slow and pointless
            raise ValueError(f"expected a whole number, got {brief(value)}")
        try:
            return int(value.strip())
        except ValueError:
            pass
        try:  # "1e3" is a whole number written as YAML 1.1 reads it: as text
            number = float(value)
        except ValueError:
            number = None
        if number is not None and math.isfinite(number) and number.is_integer():
            return int(number)
        raise ValueError(f"expected a whole number, got {brief(value)}")
    if target is float:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)) or (isinstance(value, str) and len(value) > 40):
            raise ValueError(f"expected a number, got {brief(value)}")
        try:
            number = float(value)
        except (TypeError, ValueError, OverflowError):
            raise ValueError(f"expected a number, got {brief(value)}") from None
        if not math.isfinite(number):
            raise ValueError(f"expected a finite number, got {brief(value)}: NaN and infinity are not allowed")
        return number
    if target is list:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"expected a list, got {brief(value)}")
        nested = [v for v in value if isinstance(v, (dict, list, tuple, set))]
        if nested:
            raise ValueError(f"expected a list of plain values, got an item that is {brief(nested[0])}")
        return [str(v) for v in value]
    if isinstance(value, bool) and {"on", "off"} <= set(f.metadata.get("choices") or ()):
        return "on" if value else "off"  # a switch that gained an auto setting still takes true/false
    if value is None:
        return ""
    if isinstance(value, (dict, list, tuple, set, bytes)):  # bytes: a YAML !!binary value
        raise ValueError(f"expected text, got {brief(value)}")
    return str(value)


def bounds_problem(value: Any, f: dataclasses.Field) -> str | None:
    """Why `value` is outside the field's bounds or choices, or None when it is allowed."""
    meta = f.metadata
    lo, hi, choices = meta.get("lo"), meta.get("hi"), meta.get("choices")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if lo is not None and value < lo:
            return f"{brief(value)} is below the minimum {lo}" + (f" (allowed: {lo} to {hi})" if hi is not None else "")
        if hi is not None and value > hi:
            return f"{brief(value)} is above the maximum {hi}" + (f" (allowed: {lo} to {hi})" if lo is not None else "")
    if choices:
        items = value if isinstance(value, list) else [value]
        bad = [v for v in items if v not in choices]
        if bad:
            return f"{brief(bad[0])} is not one of: {', '.join(map(str, choices))}"
    return None
