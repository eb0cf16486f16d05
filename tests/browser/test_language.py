"""Acceptance for the language switch in real Chromium: after choosing 中文, every tab shows the zh locale.

Two checks per tab, both read off the rendered page:
- every component whose text the locale holds (found by elem_id, fields by their declaration) shows the zh
  text of each of its properties (label, info, placeholder, button value);
- every Latin word visible anywhere on the page (text, placeholders) also appears in the zh locale file, where
  Chinese text names identifiers, numbers-with-units and products (lora.r, q8_0, GGUF, SmolLM2...), or is a
  choice value of a declared field or a data format (identifiers the user picks), or is a language's own name. An English
  label or message that was not switched fails this: its words ("Load", "Refresh", "Answered") are not there.
"""
from __future__ import annotations

import re

import pytest
import yaml

from core.chat.options import GenerationOptions
from core.data.formats import FORMATS
from core.eval.options import EvalOptions
from core.export.options import ExportOptions
from core.options import declared_fields
from core.spec import section_types
from tests.browser.conftest import ARTIFACTS
from webui import i18n
from webui.form import field_id, field_text

pytestmark = pytest.mark.browser

TABS = ("tab-train", "tab-data", "tab-chat", "tab-export", "tab-evaluate")
WORD = re.compile(r"(?<![\w.])[A-Za-z][A-Za-z0-9_.+-]*")  # a word, not the exponent of 1e-08

# For each id: its text as the user sees it (innerText, with info lines) and its placeholders.
READ = """ids => ids.map(id => {
  const e = document.getElementById(id);
  if (!e || !e.getClientRects().length) return null;
  const placeholders = [...e.querySelectorAll('[placeholder]')].map(x => x.getAttribute('placeholder')).filter(Boolean);
  return {id, text: e.innerText, placeholders};
}).filter(Boolean)"""

# Every piece of text a user can see on the page now: visible text nodes and placeholders. The data
# preview is left out: it shows the dataset's own text.
VISIBLE = """() => {
  const out = [];
  const walk = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  while (walk.nextNode()) {
    const node = walk.currentNode, el = node.parentElement;
    if (!el || !node.textContent.trim() || el.closest('script,style,noscript,template,#data-preview')) continue;
    if (!el.getClientRects().length || getComputedStyle(el).visibility === 'hidden') continue;
    out.push(node.textContent.trim());
  }
  for (const x of document.querySelectorAll('[placeholder]'))
    if (x.getClientRects().length && x.getAttribute('placeholder')) out.push(x.getAttribute('placeholder'));
  return out;
}"""


def _strings(value):
    if isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)
    elif isinstance(value, str):
        yield re.sub(r"(?<!\{)\{\w+\}(?!\})", " ", value)  # {placeholders} are filled with data; {{name}} is shown


def expected_texts() -> dict[str, list[str]]:
    """elem_id -> the zh strings that component must show."""
    expected = {elem_id: [v.lstrip("# ") for v in i18n.element(elem_id, "zh").values()]
                for elem_id in yaml.safe_load((i18n.LOCALES_DIR / "en.yaml").read_text(encoding="utf-8"))["elements"]}
    groups = {**section_types(), "export": ExportOptions, "generation": GenerationOptions, "eval": EvalOptions}
    for group, cls in groups.items():
        for f in declared_fields(cls):
            text = field_text(f"{group}.{f.name}", f, "zh")
            expected[field_id(f"{group}.{f.name}")] = [text["label"], text["info"]]
    return expected


def allowed_words() -> set[str]:
    zh = yaml.safe_load((i18n.LOCALES_DIR / "zh.yaml").read_text(encoding="utf-8"))
    words = {w for s in _strings(zh) for w in WORD.findall(s)} | set(i18n.LANGUAGES.values()) | set(FORMATS)
    groups = {**section_types(), "export": ExportOptions, "generation": GenerationOptions, "eval": EvalOptions}
    for cls in groups.values():
        for f in declared_fields(cls):
            words |= {str(c) for c in f.metadata.get("choices") or []}
    return words


def test_every_tab_is_chinese_after_switching(server, page):
    url, _ = server
    expected, allowed = expected_texts(), allowed_words()
    page.goto(url)
    page.wait_for_selector("#start-button", timeout=60000)
    # A message already on screen is said again in the new language: check a dataset in English first.
    page.click("#tab-data-button")
    page.click("#data-open")
    report = {lang: i18n.text("data.report.ok", lang, samples=89, format="alpaca") for lang in ("en", "zh")}
    page.wait_for_selector(f"#data-report:has-text('{report['en'][:20]}')", timeout=120000)
    page.click("#tab-train-button")
    page.get_by_text("中文", exact=True).click()
    page.wait_for_function("s => document.querySelector('#start-button').innerText.trim() === s",
                           arg=i18n.element("start-button", "zh")["value"], timeout=30000)
    # The tab bar may redraw its buttons a moment after the fields: wait for one, then read them all.
    page.wait_for_function("s => document.querySelector('#tab-train-button').innerText.trim() === s",
                           arg=i18n.element("tab-train", "zh")["label"], timeout=30000)
    assert [page.inner_text(f"#{tab}-button").strip() for tab in TABS] == [i18n.element(t, "zh")["label"] for t in TABS]
    page.click("#tab-data-button")
    assert page.inner_text("#data-report").strip() == "✅ " + report["zh"]

    checked = {}
    for tab in TABS:
        page.click(f"#{tab}-button")
        page.wait_for_selector(f"#{tab}", state="visible", timeout=15000)
        if tab == "tab-chat":
            page.click("#chat-params .label-wrap")  # fold out the generation settings, so they are checked too
        page.wait_for_timeout(1500)  # timers and renderers that follow a tab switch
        # Gradio's own "processing" overlay shows while a handler runs; read the page once it is idle.
        page.wait_for_function("() => ![...document.querySelectorAll('.progress-text, .eta-bar')]"
                               ".some(e => e.getClientRects().length)", timeout=120000)
        shown = page.evaluate(READ, [elem_id for elem_id in expected if not elem_id.startswith("tab-")])
        for item in shown:
            seen = " ".join(item["text"].split() + item["placeholders"])
            missing = [t for t in expected[item["id"]] if " ".join(t.split()) not in seen]
            assert not missing, f"{tab}: #{item['id']} shows {seen[:300]!r}, lacks {missing}"
        checked[tab] = [item["id"] for item in shown]
        english = sorted({w for text in page.evaluate(VISIBLE) for w in WORD.findall(text)} - allowed)
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"zh-{tab}.png"), full_page=True)
        assert english == [], f"{tab}: English left on the page: {english}"

    # The check saw each tab's own components, not just the header.
    assert {"start-button", "section-lora", "field-lora-r", "train-log"} <= set(checked["tab-train"])
    assert {"data-upload", "data-open", "data-columns"} <= set(checked["tab-data"])
    assert {"chat-send", "chat-prompt", "field-generation-temperature"} <= set(checked["tab-chat"])
    assert {"export-start", "field-export-shard-size", "field-export-gguf"} <= set(checked["tab-export"])
    assert {"eval-start", "field-eval-dataset", "field-eval-benchmark"} <= set(checked["tab-evaluate"])
