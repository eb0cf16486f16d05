"""Login in real Chromium: `serve --host 0.0.0.0 --auth-file F` shows a login page, refuses wrong credentials and
lets the right ones reach the Train tab; without a login file that address does not serve at all."""
from __future__ import annotations

import pytest

from core.safety.login import login_line
from tests.browser.conftest import ARTIFACTS
from tests.cli.test_serve_login import app
from tests.helpers import start_server

pytestmark = pytest.mark.browser


def sign_in(page, user: str, password: str) -> None:
    page.get_by_label("username").fill(user)
    page.get_by_label("password").fill(password)
    page.get_by_role("button", name="Login").click()


def test_login_page_refuses_wrong_credentials_and_admits_the_right_ones(page, tmp_path):
    refused = app("serve", "--host", "0.0.0.0", "--workspace", tmp_path / "ws")
    assert refused.returncode == 2 and "a login is needed" in refused.stderr

    users = tmp_path / "users"
    users.write_text(login_line("alice", "correct horse") + "\n")
    proc, url = start_server(tmp_path / "ws", tmp_path / "server.log", "--host", "0.0.0.0", "--auth-file", users)
    try:
        page.goto(url)
        page.wait_for_selector("text=LoRA Workbench · sign in", timeout=60000)
        assert page.locator("#start-button").count() == 0  # nothing of the workbench before a login
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "login-page.png"))
        for user, password in (("alice", "wrong"), ("mallory", "correct horse")):
            sign_in(page, user, password)
            page.wait_for_selector("text=Incorrect credentials", timeout=30000)
            assert page.locator("#start-button").count() == 0
        sign_in(page, "alice", "correct horse")
        page.wait_for_selector("#start-button", timeout=60000)
        page.get_by_role("tab", name="Train").wait_for(timeout=10000)
        assert page.locator("#field-model-path").count() == 1  # the Train tab's form
    finally:
        proc.terminate()
        proc.wait(timeout=30)
