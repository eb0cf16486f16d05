"""Serve the real workbench on a free port and drive it with Debian's Chromium."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run"]
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"


@pytest.fixture
def server(tmp_path):
    """Start `python app.py serve` in its own process; yields (url, workspace)."""
    from tests.helpers import start_server

    workspace = tmp_path / "ws"
    proc, url = start_server(workspace, tmp_path / "server.log", timeout_s=90)
    yield url, workspace
    proc.terminate()
    proc.wait(timeout=20)
    # Trainers run detached on purpose; a test must not leave one behind.
    from core.runs.folder import list_runs

    for run in list_runs(workspace):
        run.kill()


@pytest.fixture
def page():
    if not os.path.exists(CHROMIUM):
        pytest.skip("Debian's chromium is not installed (.ci/run installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        tab = browser.new_page(viewport={"width": 1300, "height": 1800})
        yield tab
        ARTIFACTS.mkdir(exist_ok=True)
        tab.screenshot(path=str(ARTIFACTS / "last-browser-test.png"), full_page=True)
        browser.close()
