"""UI text from the locale files (webui/locales/<lang>.yaml), in four parts:

  elements:  the text of a component, by its elem_id: label, info, placeholder, or value (buttons, headings)
  fields:    spec fields and options (core/spec, core/options), by dotted name: label and translated help
  ui:        messages and status lines the handlers compose, by key, with {placeholders}
  methods:   each method's explainer, translated (the English one is the method module's own)

English field help lives in the declaration itself (the one place a field is declared); a locale may
translate it. A missing entry falls back to English, then to the key, so a gap shows instead of failing.
"""
from __future__ import annotations

from functools import cache
from pathlib import Path

import yaml

LOCALES_DIR = Path(__file__).parent / "locales"
LANGUAGES = {"en": "English", "zh": "中文"}
ELEMENT_PROPS = ("label", "info", "placeholder", "value")


@cache
def _locale(lang: str) -> dict:
    with open(LOCALES_DIR / f"{lang}.yaml", encoding="utf-8") as fh:
        return yaml.safe_load(fh) or {}


def text(key: str, lang: str = "en", **values) -> str:
    """A UI string by key; falls back to English, then to the key itself so a gap is visible, not fatal."""
    found = _locale(lang).get("ui", {}).get(key) or _locale("en").get("ui", {}).get(key) or key
    return found.format(**values) if values else found


def has_text(key: str) -> bool:
    return key in _locale("en").get("ui", {})


def has_element(elem_id: str | None) -> bool:
    return bool(elem_id) and elem_id in _locale("en").get("elements", {})


def element(elem_id: str, lang: str = "en") -> dict[str, str]:
    """The text properties of the component `elem_id` in `lang`, each falling back to English."""
    english = _locale("en").get("elements", {}).get(elem_id) or {}
    own = _locale(lang).get("elements", {}).get(elem_id) or {}
    return {prop: own.get(prop) or english[prop] for prop in ELEMENT_PROPS if prop in english}


def props(elem_id: str, lang: str = "en") -> dict[str, str]:
    """Keyword arguments for building the component `elem_id`: its id and its text in `lang`."""
    return {**element(elem_id, lang), "elem_id": elem_id}


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


def render(message: list, lang: str = "en") -> str:
    """A message kept as parts, so it can be shown again in another language. Each part is literal text
    (already escaped for Markdown/HTML), [key] or [key, {values}] of a `ui` string, or {"field": dotted}
    for a field's label."""
    def one(part) -> str:
        if isinstance(part, str):
            return part
        if isinstance(part, dict):
            return field_label(part["field"], lang)
        return text(part[0], lang, **(part[1] if len(part) > 1 else {}))

    return "".join(one(part) for part in message or [])
