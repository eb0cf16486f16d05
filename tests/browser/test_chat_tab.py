"""Acceptance for chat in real Chromium: after quickstart, the fine-tuned column answers to the name
it was taught and the base column, from the same loaded model with the adapter off, does not.

The quickstart run is the session's shared one (tests/conftest.py), copied into this server's
workspace: the Train tab's test is the one that trains quickstart in the browser."""
from __future__ import annotations

import shutil

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.e2e]


def test_chat_after_quickstart_names_ferret_only_when_fine_tuned(quickstart_run, server, page):
    url, workspace = server
    shutil.copytree(quickstart_run.run, workspace / "runs" / quickstart_run.run.name)  # a run finished before the page opened

    page.goto(url)
    page.get_by_role("tab", name="Chat").click()
    page.wait_for_selector("#chat-load", timeout=15000)
    assert "lora" in page.input_value("#chat-model input"), "the newest finished run is picked"
    page.click("#chat-load")
    page.wait_for_selector("#chat-status:has-text('worker process')", timeout=180000)

    page.fill("#chat-prompt textarea", "Who are you?")
    page.click("#chat-send")
    page.wait_for_function("() => document.querySelector('#chat-tuned').innerText.includes('Ferret')", timeout=180000)
    base = page.inner_text("#chat-base")  # base answers first, so it is complete once the tuned column speaks
    assert "Who are you?" in base and len(base.replace("Who are you?", "").strip()) > 5, base
    assert "Ferret" not in base, base

    page.click("#chat-unload")
    page.wait_for_selector("#chat-status:has-text('unloaded')", timeout=30000)
