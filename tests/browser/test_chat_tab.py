"""Acceptance for chat in real Chromium: after quickstart, the fine-tuned column answers to the name
it was taught and the base column, from the same loaded model with the adapter off, does not."""
from __future__ import annotations

import subprocess
import sys

import pytest

from core.paths import PROJECT_ROOT

pytestmark = [pytest.mark.browser, pytest.mark.e2e]


def test_chat_after_quickstart_names_ferret_only_when_fine_tuned(server, page):
    url, workspace = server
    trained = subprocess.run([sys.executable, "app.py", "train", "presets/quickstart.yaml", "--workspace", str(workspace)],
                             cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=1200)
    assert trained.returncode == 0, trained.stderr[-3000:]

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
