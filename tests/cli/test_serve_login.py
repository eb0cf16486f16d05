"""`serve` off loopback refuses to start without a login file, with a message and a non-zero exit; a bad login
file or root is named; `passwd` makes a line the server accepts, reading the password from stdin."""
from __future__ import annotations

import os
import subprocess
import sys

from core.paths import PROJECT_ROOT
from core.safety.login import AUTH_FILE_ENV, read_auth_file


def app(*args, stdin: str | None = None, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k != AUTH_FILE_ENV}
    return subprocess.run([sys.executable, "app.py", *map(str, args)], cwd=PROJECT_ROOT, input=stdin, capture_output=True,
                          text=True, timeout=timeout, env={**clean, **(env or {})})


def test_no_login_file_off_loopback_means_no_server(tmp_path):
    for args in (["serve", "--host", "0.0.0.0"], ["--host", "0.0.0.0"], ["serve", "--host", "192.168.1.20"],
                 ["--host", "::", "serve"]):
        done = app(*args, "--workspace", tmp_path / "ws", "--port", "1")  # port 1: it must not even try to listen
        assert done.returncode == 2, (args, done.stderr)
        assert "a login is needed" in done.stderr and "--auth-file" in done.stderr and AUTH_FILE_ENV in done.stderr


def test_bad_login_files_and_roots_are_named(tmp_path):
    bad = tmp_path / "users"
    bad.write_text("# users\nalice:not-a-hash\n")
    done = app("serve", "--host", "0.0.0.0", "--auth-file", bad, "--workspace", tmp_path / "ws")
    assert done.returncode == 2 and f"{bad} line 2: not a password hash" in done.stderr
    done = app("serve", "--host", "0.0.0.0", "--workspace", tmp_path / "ws", env={AUTH_FILE_ENV: str(tmp_path / "none")})
    assert done.returncode == 2 and "login file" in done.stderr and "not found" in done.stderr
    done = app("serve", "--data-root", tmp_path / "missing", "--export-root", bad, "--workspace", tmp_path / "ws")
    assert done.returncode == 2 and "--data-root" in done.stderr and "--export-root" in done.stderr


def test_passwd_prints_a_line_the_server_accepts(tmp_path):
    done = app("passwd", "alice", stdin="a long pass phrase\n")
    assert done.returncode == 0 and done.stdout.startswith("alice:scrypt$") and "a long pass phrase" not in done.stdout
    users = tmp_path / "users"
    users.write_text(done.stdout)
    creds = read_auth_file(users)
    assert creds.check("alice", "a long pass phrase") and not creds.check("alice", "a long pass phrase ")
    assert app("passwd", "bob", stdin="\n").returncode == 2
    refused = app("passwd", "bo:b", stdin="pw\n")
    assert refused.returncode == 2 and "no colon" in refused.stderr
