"""What one dataset row (and one dataset) may hold, checked as each row is read.

A row is refused, with its line, when it:
- is larger than MAX_ROW_BYTES: no sample can be trained at that length (data.max_length is at most
  131,072 tokens, a few hundred kB of text), and one such row made the Data tab send 40 MB of HTML;
- nests deeper than MAX_DEPTH: real samples are a handful of levels deep, and a deeply nested one made
  Python's JSON reader raise RecursionError;
- holds NaN or Infinity (JSON has neither; Python's reader accepts them and they reached the model as the
  text "nan");
- holds a lone surrogate (\\ud800 escaped in JSON): half of a UTF-16 pair, which is no character at all and
  makes the tokenizer or any later write of the text fail.
A dataset of more than MAX_ROWS rows is refused as a whole: every row is held in memory for training.
"""
from __future__ import annotations

import math
import re

MAX_ROW_BYTES = 2_000_000
MAX_DEPTH = 64
MAX_ROWS = 10_000_000  # the job spec's data.max_samples goes as far as this (core/spec/schema.py)

_SURROGATE = re.compile("[\ud800-\udfff]")


def row_size_problem(size: int) -> str | None:
    if size > MAX_ROW_BYTES:
        return (f"the row is {size / 1e6:.1f} MB; a sample may be at most {MAX_ROW_BYTES / 1e6:g} MB "
                "(far more than the longest max_length can train)")
    return None


def rows_problem(count: int) -> str | None:
    if count > MAX_ROWS:
        return f"holds more than {MAX_ROWS:,} rows; split it, or pick a subset before training"
    return None


def value_problem(value, nan_allowed: bool = False) -> str | None:
    """Why a parsed row cannot be used (nesting, NaN, lone surrogate), naming where in the row; None if fine.

    Walks the row without recursion, so any depth the parser returned is measured safely."""
    stack = [(value, "", 1)]
    while stack:
        item, path, depth = stack.pop()
        if depth > MAX_DEPTH:
            shown = path if len(path) <= 60 else path[:60] + "…"
            return f"nested deeper than {MAX_DEPTH} levels (at {shown or 'the top'}); a sample is a few levels deep"
        if isinstance(item, dict):
            for key, child in item.items():
                if isinstance(key, str) and _SURROGATE.search(key):
                    return f"a key holds a lone surrogate ({_surrogate_at(key)}), which is not a character"
                stack.append((child, f"{path}.{key}" if path else str(key), depth + 1))
        elif isinstance(item, list):
            for number, child in enumerate(item):
                stack.append((child, f"{path}[{number}]", depth + 1))
        elif isinstance(item, float) and not nan_allowed and not math.isfinite(item):
            return f"{path or 'the value'} is {item}; JSON has no NaN or Infinity: write a number or text"
        elif isinstance(item, str) and _SURROGATE.search(item):
            return (f"{path or 'the value'} holds a lone surrogate ({_surrogate_at(item)}): half of a UTF-16 pair, "
                    "which is no character; fix the escape or the tool that wrote the file")
    return None


def _surrogate_at(text: str) -> str:
    found = _SURROGATE.search(text)
    return f"\\u{ord(found.group()):04x} at character {found.start() + 1}"
