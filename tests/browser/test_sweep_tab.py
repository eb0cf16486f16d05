"""The Sweep tab in real Chromium: a bad grid is refused with the combination named and nothing queued; a
small sweep on the tiny model starts from the page and its table fills in until every row is completed
with its losses, and the charts are drawn."""
from __future__ import annotations

import pytest
import yaml

from core.sweeps.results import sweep_rows
from core.sweeps.store import list_sweeps
from tests.browser.test_train_tab import set_field, wait_for
from tests.helpers import tiny_job

pytestmark = pytest.mark.browser

TABLE = "() => document.querySelector('#sweep-table').innerText"


def fill(page, elem_id, text):
    box = page.locator(f"#{elem_id} textarea").first
    box.fill(text)
    box.press("Tab")


def test_a_small_sweep_fills_its_table(server, page, tmp_path, tiny_model_dir):
    url, workspace = server
    text = yaml.safe_dump(tiny_job(tiny_model_dir, data={"eval_split": 0.25, "eval_steps": 1}, runtime={"threads": 1}))
    outside, job = tmp_path / "tiny-job.yaml", workspace / "tiny-job.yaml"
    outside.write_text(text)
    job.write_text(text)
    page.goto(url)
    page.wait_for_selector("#start-button", timeout=60000)
    page.click("#tab-sweep-button")
    set_field(page, "sweep-job", outside)  # the served page reads job files only where it reads data
    fill(page, "sweep-ties", "lora.alpha=2*lora.r")
    fill(page, "sweep-overrides", "train.max_steps=2")
    fill(page, "sweep-grid", "lora.r=2,0")
    fill(page, "sweep-eval", "")  # the sweep file picked first filled it; this sweep has no evaluation
    page.click("#sweep-start")
    page.wait_for_selector("#sweep-message:has-text('outside the folders')", timeout=30000)
    set_field(page, "sweep-job", job)
    page.click("#sweep-start")
    page.wait_for_selector("#sweep-message:has-text('combination 2 (lora.r=0) lora.r')", timeout=30000)
    assert not list_sweeps(workspace) and not any((workspace / "queue").glob("*.yaml"))

    fill(page, "sweep-grid", "lora.r=2,4")
    page.click("#sweep-start")
    page.wait_for_selector("#sweep-message:has-text('2 runs queued')", timeout=30000)
    [sweep] = list_sweeps(workspace)
    text = wait_for(page, TABLE, lambda t: t.count("completed") == 2, 400, "both rows of the table to be completed")
    for words in ("lora.r", "lora.alpha", "final train loss", "eval loss", "peak memory (MB)"):
        assert words in text, text
    # what the page shows is the sweep's table as core reads it from the runs' files
    rows = sweep_rows(workspace, sweep, request_eval=False)
    assert [(r.settings["lora.r"], r.settings["lora.alpha"], r.state) for r in rows] == [(2, 4, "completed"),
                                                                                          (4, 8, "completed")]
    for row in rows:
        assert row.eval_loss > 0 and row.run_id in text and f"{row.eval_loss:.4g}"[:4] in text
    page.wait_for_selector("#sweep-charts .js-plotly-plot", timeout=30000)
