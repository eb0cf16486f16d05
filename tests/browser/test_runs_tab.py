"""The Runs tab in real Chromium: it lists runs started in the page and from a terminal; a stopped run
resumes from its checkpoint and its chart goes on as one curve with the resume point marked; Start while
it runs offers "Add to queue", and the queued job runs after it; two finished runs compare with both
curves overlaid and the settings in which they differ."""
from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
import yaml

from core.paths import PROJECT_ROOT
from core.runs import queue, runner
from tests.browser.test_train_tab import STATE, set_field, wait_for
from tests.helpers import tiny_job, tiny_spec, wait_for_end, wait_for_step, wait_until

pytestmark = pytest.mark.browser
STEPS = 48  # the resumed run

OPEN_STATE = "() => { const d = document.querySelector('#runs-open'); return d ? d.dataset.state : null; }"
TABLE_TEXT = "() => document.querySelector('#runs-table').innerText"
# The open run's loss curve and the dashed lines that mark where an attempt took over.
RUN_CHART = """() => { const p = document.querySelector('#runs-charts .js-plotly-plot');
  return p && p.data ? {steps: p.data[0].x, marks: (p.layout.shapes || []).filter(s => s.line && s.line.dash === 'dash')
  .map(s => s.x0)} : null; }"""
COMPARE_CHART = """() => { const p = document.querySelector('#runs-compare-charts .js-plotly-plot');
  return p && p.data ? p.data.filter(t => t.showlegend !== false).map(t => t.name) : []; }"""


def choose(page, elem_id: str, text: str) -> None:
    """Pick the option of a Gradio dropdown whose label contains `text`."""
    box = page.locator(f"#{elem_id} input").first
    box.click()
    box.fill(text)
    page.get_by_role("option", name=text).first.click()


def test_runs_tab_lists_resumes_and_compares(server, page, tmp_path, tiny_model_dir):
    url, workspace = server
    # From a terminal: a finished run with 3 steps.
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump(tiny_job(tiny_model_dir, train={"max_steps": 3})))
    done = subprocess.run([sys.executable, "app.py", "train", str(job), "--workspace", str(workspace)],
                          cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    cli_run = done.stdout.strip().splitlines()[-1].rsplit("/", 1)[-1]
    # A stopped run with the checkpoint that Stop wrote.
    stopped = runner.start(tiny_spec(tiny_model_dir, train={"max_steps": STEPS, "save_steps": 1000},
                                     runtime={"threads": 1}), workspace)
    wait_for_step(stopped, 3)
    runner.stop(stopped)
    stopped_at = wait_for_end(stopped)["step"]

    page.goto(url)
    page.wait_for_selector("#start-button", timeout=60000)
    # From the page: a finished run with 2 steps and another learning rate.
    set_field(page, "field-model-path", tiny_model_dir)
    set_field(page, "field-train-max-steps", 2)
    set_field(page, "field-train-learning-rate", 0.001)
    page.click("#start-button")
    wait_for(page, STATE, lambda s: s == "completed", 240, "the run started in the page to complete")
    ui_run = next(p.name for p in (workspace / "runs").iterdir() if p.name not in (cli_run, stopped.run_id))

    page.click("#tab-runs-button")
    wait_for(page, TABLE_TEXT, lambda t: all(r in t for r in (cli_run, ui_run, stopped.run_id)), 30,
             "the table to list the runs from the terminal and the page")

    choose(page, "runs-pick", stopped.run_id)
    wait_for(page, OPEN_STATE, lambda s: s == "stopped", 30, "the stopped run to open")
    page.click("#runs-resume")
    # Held still while the page queues a job behind it: forked from the warm host, the trainer could
    # otherwise finish all its steps first.
    trainer = wait_until(lambda: (s := stopped.raw_status())["state"] == "running" and s["pid"], 60,
                         "the resumed run's trainer")
    os.kill(trainer, signal.SIGSTOP)
    try:
        wait_for(page, OPEN_STATE, lambda s: s == "running", 60, "the resumed run to run")
        page.click("#tab-train-button")  # the form still holds the page's job
        page.click("#start-button")
        page.wait_for_selector("#train-queue", state="visible", timeout=30000)
        # Waited for, not read at once: the offer to queue can show before the message is replaced.
        page.wait_for_selector("#train-message:has-text('Not started')", timeout=30000)
        page.click("#train-queue")
        page.wait_for_selector("#train-message:has-text('Queued as')", timeout=30000)
        (entry,) = queue.entries(workspace)
    finally:
        os.kill(trainer, signal.SIGCONT)
    page.click("#tab-runs-button")
    # The queue table lists the job while it waits; on a fast machine the resumed run may end first, and then
    # the job has already left the queue for its run (checked below).
    wait_for(page, "() => document.querySelector('#runs-queue-table').innerText",
             lambda t: entry.entry_id in t or queue.started_runs(workspace).get(entry.entry_id), 30,
             "the queued job in the queue table")

    wait_for(page, OPEN_STATE, lambda s: s == "completed", 300, "the resumed run to complete")
    chart = wait_for(page, RUN_CHART, lambda c: c and len(c["steps"]) == STEPS, 30, "the chart to show every step")
    assert chart["steps"] == list(range(1, STEPS + 1)), "one continuous curve, every step once"
    assert stopped_at in chart["marks"], chart
    assert "2 attempts" in page.inner_text("#runs-open")
    queued_run = wait_until(lambda: queue.started_runs(workspace).get(entry.entry_id), 60, "the queued job to start")
    assert wait_for_end(queued_run)["state"] == "completed"
    wait_for(page, TABLE_TEXT, lambda t: queued_run.run_id in t, 30, "the queued job's run in the table")
    page.click("#runs-load")  # the open run's job goes into the Train tab's form
    page.wait_for_selector("#start-button", state="visible", timeout=30000)
    wait_for(page, "() => document.querySelector('#field-train-max-steps input').value", lambda v: v == str(STEPS),
             30, "the loaded job's max_steps in the form")
    page.click("#tab-runs-button")

    choose(page, "runs-compare-pick", cli_run)
    choose(page, "runs-compare-pick", ui_run)
    page.click("#runs-compare-button")
    names = wait_for(page, COMPARE_CHART, lambda n: len(n) == 2, 60, "both runs' curves")
    assert sorted(names) == sorted([cli_run, ui_run])
    table = page.inner_text("#runs-compare-table")
    assert "train.max_steps" in table and "train.learning_rate" in table and "lora.r" not in table
