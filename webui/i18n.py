"""UI text from the locale files, keyed by element id or spec field.

English field help comes from the spec itself (the one place a field is
declared); a locale file may translate it under `fields.<section.key>.help`.
"""
from __future__ import annotations

from functools import cache
from pathlib import Path

import yaml

LOCALES_DIR = Path(__file__).parent / "locales"
LANGUAGES = {"en": "English", "zh": "中文"}


@cache
def _locale(lang: str) -> dict:
    with open(LOCALES_DIR / f"{lang}.yaml", encoding="utf-8") as fh:
        return yaml.safe_load(fh) or {}


def text(key: str, lang: str = "en", **values) -> str:
    """A UI string by id; falls back to English, then to the key itself so a gap is visible, not fatal."""
    found = _locale(lang).get("ui", {}).get(key) or _locale("en").get("ui", {}).get(key) or key
    return found.format(**values) if values else found


def field_label(dotted: str, lang: str = "en") -> str:
    for source in (lang, "en"):
        label = _locale(source).get("fields", {}).get(dotted, {}).get("label")
        if label:
            return label
    return dotted.split(".", 1)[-1].replace("_", " ").capitalize()


def field_help(dotted: str, english_help: str, lang: str = "en") -> str:
    return _locale(lang).get("fields", {}).get(dotted, {}).get("help") or english_help


def explainer(method: str, english: str, lang: str = "en") -> str:
    return _locale(lang).get("methods", {}).get(method) or english
