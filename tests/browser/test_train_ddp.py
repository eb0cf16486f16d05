"""A two-process DDP run on the CPU, set up and followed in the Train tab in real Chromium."""
from __future__ import annotations

import re

import pytest

from core.runtime.hardware import cpu_cores
from tests.browser.conftest import ARTIFACTS
from tests.browser.test_train_tab import STATE, set_field, wait_for

# Slow: two trainer processes; tests/runtime/test_ddp_cpu.py is the default suite's DDP check.
pytestmark = [pytest.mark.browser, pytest.mark.slow]


def pick(page, elem_id, option):
    page.click(f"#{elem_id} input")
    page.get_by_role("option", name=option, exact=True).click()


def test_ddp_run_through_the_ui(server, page, tiny_model_dir):
    url, workspace = server
    page.goto(url)
    page.wait_for_selector("#start-button", timeout=90000)  # the page loads slowly on a busy machine
    set_field(page, "field-model-path", tiny_model_dir)
    set_field(page, "field-data-max-samples", 16)
    set_field(page, "field-data-max-length", 64)
    set_field(page, "field-train-max-steps", 4)
    set_field(page, "field-train-batch-size", 2)
    page.locator("#section-runtime").get_by_text("Runtime", exact=True).first.click()  # folded at start
    machine = page.inner_text("#train-machine")
    assert f"{cpu_cores()} CPU cores" in machine and "no NVIDIA GPU" in machine, machine
    page.click("#field-runtime-device input")  # the picker offers this machine's devices
    offered = page.get_by_role("option").all_inner_texts()
    assert [o.replace("✓", "").strip() for o in offered] == ["auto", "cpu"], offered  # ✓ marks the current one
    page.get_by_role("option", name="cpu", exact=True).click()
    set_field(page, "field-runtime-processes", 2)
    pick(page, "field-runtime-strategy", "ddp")
    assert not page.locator("#node-command-button").is_visible()  # one node: no other nodes' commands
    page.click("#start-button")
    wait_for(page, STATE, lambda s: s in ("completed", "failed"), 300, "the DDP run to end")
    page.screenshot(path=str(ARTIFACTS / "train-ddp.png"), full_page=True)
    assert wait_for(page, STATE, lambda s: s == "completed", 5, "completed") == "completed"
    (run,) = (workspace / "runs").iterdir()
    log = (run / "train.log").read_text()
    for rank in (0, 1):
        assert re.search(rf"\[rank{rank}\]:\[workbench\] rank {rank} of 2 trained on 8 rows", log), log[-3000:]
    assert (run / "adapter" / "adapter_model.safetensors").is_file() and (run / "accelerate.yaml").is_file()
    tail = page.input_value("#train-log textarea")  # the tab shows the ranks' lines as they are
    assert "[rank0]:" in tail and "completed: every rank of node 0 ended" in tail, tail[-2000:]
    assert not page.locator("#train-gpu-charts").is_visible()  # no GPUs: no GPU charts, no error
