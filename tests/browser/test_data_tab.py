"""The Data tab in real Chromium: upload a file, see its coloured preview and histogram, train on it;
bad data is listed with its lines and the Train tab refuses it before launch."""
from __future__ import annotations

import json

import pytest

from tests.browser.test_train_tab import STATE, set_field, wait_for

pytestmark = pytest.mark.browser

def upload_file(page, path):
    with page.expect_file_chooser() as chooser:
        page.click("#data-upload")
    chooser.value.set_files(str(path))


HIST_BARS = "() => { const p = document.querySelector('#data-histogram .js-plotly-plot'); return p && p.data ? p.data[0].x.length : -1; }"


def test_upload_preview_histogram_then_train(server, page, tmp_path, tiny_model_dir):
    url, workspace = server
    rows = [{"instruction": f"What is {i} plus {i}?", "input": "", "output": f"{i} plus {i} is {2 * i}."} for i in range(24)]
    upload = tmp_path / "doubling.jsonl"
    upload.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    page.goto(url)
    set_field(page, "field-model-path", tiny_model_dir)  # the tiny model keeps training to seconds
    set_field(page, "field-train-max-steps", 2)
    page.get_by_role("tab", name="Data").click()
    upload_file(page, upload)
    page.wait_for_selector("#data-preview .sample", timeout=60000)
    assert (workspace / "data" / "doubling.jsonl").is_file()  # the upload landed in the workspace
    assert page.locator("#data-preview .tok-train").count() > 0 and page.locator("#data-preview .tok-mask").count() > 0
    assert "24 samples" in page.inner_text("#data-report")
    assert wait_for(page, HIST_BARS, lambda n: n == 24, 30, "the histogram") == 24
    first = page.inner_text("#data-page")
    page.click("#data-next")
    page.wait_for_function(f"() => document.querySelector('#data-page').innerText !== {json.dumps(first)}", timeout=15000)
    page.click("#data-use")
    page.wait_for_selector("#data-use-message:has-text('doubling')", timeout=15000)
    page.get_by_role("tab", name="Train").click()
    assert page.input_value("#field-data-dataset input").endswith("doubling.jsonl")
    page.click("#start-button")
    wait_for(page, STATE, lambda s: s == "completed", 180, "training on the upload to complete")


def test_bad_upload_lists_lines_and_training_is_refused(server, page, tmp_path):
    url, workspace = server
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"instruction": "a", "output": "b"}\n{oops\n{"instruction": "c", "output": ""}\n')
    page.goto(url)
    page.get_by_role("tab", name="Data").click()
    upload_file(page, bad)
    page.wait_for_selector("#data-report:has-text('line 2')", timeout=60000)
    assert "line 3" in page.inner_text("#data-report")
    page.get_by_role("tab", name="Train").click()
    set_field(page, "field-data-dataset", workspace / "data" / "bad.jsonl")
    page.click("#start-button")
    page.wait_for_selector("#train-message:has-text('line 2')", timeout=30000)
    assert not (workspace / "runs").exists() or not any((workspace / "runs").iterdir())
