"""Both locale files are complete: every element, message and declared field has its English and Chinese
text, and every component the page draws with words finds them by its id."""
from __future__ import annotations

import re
from pathlib import Path

import gradio as gr
import pytest
import yaml

from core.chat.options import GenerationOptions
from core.eval.options import EvalOptions
from core.eval.worker import STAGES as EVAL_STAGES
from core.export.options import ExportOptions
from core.export.worker import STAGES
from core.options import declared_fields
from core.runs.folder import ACTIVE_STATES, FINAL_STATES
from core.spec import section_types
from webui import i18n
from webui.form import FIELD_IDS

LOCALES = {lang: yaml.safe_load((i18n.LOCALES_DIR / f"{lang}.yaml").read_text(encoding="utf-8")) for lang in ("en", "zh")}
WEBUI = Path(i18n.__file__).parent


def declared() -> list[tuple[str, object]]:
    groups = {**section_types(), "export": ExportOptions, "generation": GenerationOptions, "eval": EvalOptions}
    return [(f"{group}.{f.name}", f) for group, cls in groups.items() for f in declared_fields(cls)]


@pytest.mark.parametrize("part", ["elements", "ui", "fields"])
def test_both_languages_have_the_same_keys(part):
    assert set(LOCALES["en"][part]) == set(LOCALES["zh"][part])


def test_elements_have_the_same_texts_in_both():
    for elem_id, english in LOCALES["en"]["elements"].items():
        assert set(english) == set(LOCALES["zh"]["elements"][elem_id]), elem_id
        assert set(english) <= set(i18n.ELEMENT_PROPS), elem_id


def test_every_declared_field_has_a_chinese_label_and_help():
    missing = [dotted for dotted, _ in declared()
               if not (LOCALES["zh"]["fields"].get(dotted, {}).get("label") and LOCALES["zh"]["fields"][dotted].get("help"))]
    assert missing == []


def test_every_message_key_the_code_uses_exists():
    source = "\n".join(p.read_text(encoding="utf-8") for p in WEBUI.glob("*.py"))
    # i18n.text("key", ...) calls, and message parts ["key"] or ["key", {values}] (not subscripts d["key"])
    used = set(re.findall(r'i18n\.text\("([\w.]+)"', source))
    used |= set(re.findall(r'(?<![\w\])])\["([a-z_]+(?:\.[a-z_]+)*)"(?:\]|, \{)', source))
    used |= {f"state.{s}" for s in (*ACTIVE_STATES, *FINAL_STATES)}
    used |= {f"export.state.{s}" for s in ("queued", "running", "completed", "failed", "cancelled")}
    used |= {f"data.warn.{code}" for code in ("cut", "nothing_trained", "stop_not_trained", "long")}
    used |= {f"export.stage.{key}" for key in (*STAGES, "queued")}
    used |= {f"eval.stage.{key}" for key in (*EVAL_STAGES, "queued")}
    used |= {f"eval.{kind}.{key}" for kind, keys in {"state": ("queued", "running", "completed", "failed", "cancelled"),
             "model": ("base", "tuned"), "verdict": ("better", "worse", "same"),
             "score": ("loss", "perplexity", "exact_match", "contains", "rouge_l"),
             "col": ("prompt", "reference", "base", "tuned", "verdict", "metric", "difference")}.items() for key in keys}
    assert len(used) > 40 and sorted(k for k in used if k not in LOCALES["en"]["ui"]) == []


def test_every_worded_component_of_the_page_finds_its_text_by_id(tmp_path):
    from webui.app import build_app

    demo = build_app(tmp_path / "ws")
    worded = (gr.Button, gr.UploadButton, gr.Textbox, gr.Dropdown, gr.Checkbox, gr.CheckboxGroup, gr.Number,
              gr.Accordion, gr.Tab, gr.Plot, gr.Chatbot)
    gaps = [f"{type(b).__name__}#{b.elem_id}" for b in demo.blocks.values()
            if isinstance(b, worded) and b.elem_id not in ("data-prev", "data-next")
            and not i18n.has_element(b.elem_id) and b.elem_id not in FIELD_IDS]
    assert gaps == []
    assert {dotted for dotted, _ in FIELD_IDS.values()} == {dotted for dotted, _ in declared()}  # every field is drawn
