"""Evaluate a finished run in real Chromium: pick it, start, watch the progress bar end, and see the scores and
the side-by-side table of base and tuned answers, in the page, without a reload."""
from __future__ import annotations

import shutil

import pytest

from tests.browser.test_train_tab import set_field, wait_for

pytestmark = pytest.mark.browser


def test_evaluate_a_finished_run_and_see_the_side_by_side_table(server, page, tiny_runs):
    url, workspace = server
    run = tiny_runs["lora"]
    shutil.copytree(run.path, workspace / "runs" / run.run_id)
    page.goto(url)
    page.wait_for_selector("#start-button", timeout=60000)
    page.click("#tab-evaluate-button")
    wait_for(page, "() => document.querySelector('#field-eval-run input').value", lambda v: run.run_id in (v or ""),
             30, "the finished run in the evaluate picker")
    page.locator("#field-eval-dataset textarea, #field-eval-dataset input").first.fill("arithmetic_2digit_test")
    set_field(page, "field-eval-max-samples", 2)
    set_field(page, "field-eval-max-new-tokens", 6)
    page.click("#eval-start")
    wait_for(page, "() => document.querySelector('#eval-progress').dataset.state", lambda s: s in ("completed", "failed"),
             240, "the evaluation to end")
    assert page.evaluate("() => document.querySelector('#eval-progress').dataset.state") == "completed", \
        page.inner_text("#eval-progress")
    page.wait_for_selector("#eval-results table.eval-samples", timeout=15000)
    headers = page.locator("#eval-results table.eval-samples th").all_inner_texts()
    assert headers == ["Question", "Expected", "Base answer", "Tuned answer", "Tuned is"]
    assert page.locator("#eval-results table.eval-samples tr").count() == 3  # header + 2 samples
    assert "What is 18 + 52?" in page.inner_text("#eval-results")
    verdicts = page.locator("#eval-results [data-verdict]").all_inner_texts()
    assert len(verdicts) == 2 and set(verdicts) <= {"better", "worse", "same"}
    assert (workspace / "runs" / run.run_id / "eval" / "arithmetic_2digit_test.json").is_file()
