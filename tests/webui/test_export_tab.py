"""The Export tab says the export's stage in the page's language, from the worker's stage key."""
from __future__ import annotations

from core.export.worker import stage_fields
from webui.export_tab import stage_text


def test_stage_in_both_languages_and_english_for_an_unknown_stage():
    status = stage_fields("gguf_write", type="f16")
    assert status["stage"] == "writing GGUF f16"  # the CLI's progress bar and the log say this
    assert stage_text(status, "en") == "writing GGUF f16" and stage_text(status, "zh") == "正在写出 GGUF f16"
    assert stage_text({"stage": "queued"}, "zh") == "排队中"  # written by the launcher, before any key
    assert stage_text({"stage": "something new"}, "zh") == "something new"
