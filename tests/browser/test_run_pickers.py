"""Chat and Export follow the runs in real Chromium: a run that finishes in the page is offered first by
both pickers, Send answers without pressing Load (it loads the picked run), Unload and Load work, and
Export with no folder given writes the default one. Tiny-model runs keep this to a few minutes."""
from __future__ import annotations

import shutil

import pytest

from tests.browser.test_train_tab import STATE, set_field, wait_for

pytestmark = pytest.mark.browser

PICKED = "() => document.querySelector('{} input').value"


def test_a_finished_run_is_offered_first_and_send_loads_it(server, page, tiny_runs, tiny_model_dir):
    url, workspace = server
    # An older finished run, trained elsewhere (the session's shared tiny run) and copied in: the pickers start on it.
    older = tiny_runs["lora"]
    shutil.copytree(older.path, workspace / "runs" / older.run_id)

    page.goto(url)
    page.wait_for_selector("#start-button", timeout=60000)
    page.click("#tab-chat-button")
    wait_for(page, PICKED.format("#chat-model"), lambda v: older.run_id in (v or ""), 30, "the older run in the chat picker")

    page.click("#tab-train-button")
    set_field(page, "field-model-path", tiny_model_dir)
    set_field(page, "field-train-max-steps", 2)
    page.click("#start-button")
    wait_for(page, "() => document.querySelector('#train-progress').innerText", lambda t: older.run_id not in t, 30,
             "the progress line to show the new run")
    wait_for(page, STATE, lambda s: s == "completed", 240, "the run started in the page to complete")
    newer = next(p.name for p in (workspace / "runs").iterdir() if p.name != older.run_id)
    page.reload()  # a fresh page shows the newest run, with its job in the form
    page.wait_for_selector("#start-button", timeout=60000)
    wait_for(page, "() => document.querySelector('#train-progress').innerText", lambda t: newer in t, 60,
             "the reloaded page to show the new run")
    assert page.input_value("#field-train-max-steps input") == "2"

    page.click("#tab-chat-button")
    wait_for(page, PICKED.format("#chat-model"), lambda v: newer in (v or ""), 30, "the new run in the chat picker")
    assert "worker process" not in page.inner_text("#chat-status")  # nothing is loaded yet
    page.fill("#chat-prompt textarea", "Who are you?")
    page.click("#chat-send")  # no Load: Send loads the picked run
    page.wait_for_selector(f"#chat-status:has-text('{newer}')", timeout=180000)
    page.wait_for_function("() => document.querySelectorAll('#chat-tuned .message').length >= 2 || "
                           "document.querySelector('#chat-tuned').innerText.includes('Who are you?')", timeout=180000)
    assert "Chat error" not in page.inner_text("#chat-message")
    page.click("#chat-unload")
    page.wait_for_selector("#chat-status:has-text('unloaded')", timeout=60000)
    page.click("#chat-load")  # and Load still loads the picked run
    page.wait_for_selector(f"#chat-status:has-text('{newer}')", timeout=180000)

    page.click("#tab-export-button")
    wait_for(page, PICKED.format("#field-export-run"), lambda v: newer in (v or ""), 30, "the new run in the export picker")
    page.click("#export-start")  # no output folder given: <workspace>/exports/<run>-merged
    wait_for(page, "() => document.querySelector('#export-progress').dataset.state", lambda s: s in ("completed", "failed"),
             240, "the export to end")
    assert page.evaluate("() => document.querySelector('#export-progress').dataset.state") == "completed", \
        page.inner_text("#export-progress")
    assert (workspace / "exports" / f"{newer}-merged" / "config.json").is_file()
