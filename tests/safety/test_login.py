"""The login rule: loopback needs none, any other address needs a login file; hashes are salted scrypt checked
in constant time; a bad login file is refused naming its line; wrong guesses are slow."""
from __future__ import annotations

import asyncio
import time

import pytest

from core.safety.login import (
    AUTH_FILE_ENV,
    AuthError,
    Credentials,
    PasswordHash,
    credentials_for,
    hash_password,
    is_loopback,
    login_checker,
    login_line,
    read_auth_file,
    serve_refusal,
)


@pytest.mark.parametrize("host", ["127.0.0.1", "127.1.2.3", "localhost", "LOCALHOST", "::1", "[::1]"])
def test_loopback_needs_no_login(host):
    assert is_loopback(host) and serve_refusal(host, None) is None


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.5", "10.0.0.1", "example.org", "my-gpu-box", ""])
def test_any_other_address_needs_credentials(host):
    message = serve_refusal(host, None)
    assert not is_loopback(host) and "--auth-file" in message and AUTH_FILE_ENV in message
    assert serve_refusal(host, Credentials({"a": PasswordHash.parse(hash_password("p"))})) is None


def test_hashes_are_salted_self_describing_and_checked():
    one, two = hash_password("correct horse"), hash_password("correct horse")
    assert one != two and one.startswith("scrypt$16384$8$1$")  # a fresh salt each time
    assert "correct horse" not in one
    parsed = PasswordHash.parse(one)
    assert parsed.matches("correct horse") and not parsed.matches("correct horsE") and not parsed.matches("")


def test_login_file_lines_and_errors_name_the_line(tmp_path):
    good = tmp_path / "users"
    good.write_text(f"# operators\n\n{login_line('alice', 'a-pass')}\n{login_line('bob', 'b-pass')}\n")
    creds = read_auth_file(good)
    assert creds.check("alice", "a-pass") and creds.check("bob", "b-pass")
    assert not creds.check("alice", "b-pass") and not creds.check("carol", "a-pass") and not creds.check("", "")
    cases = {"alice:plaintext\n": "line 1: not a password hash",
             "no colon here\n": "line 1: expected user:hash",
             f"# c\n{login_line('a', 'x')}\n{login_line('a', 'y')}\n": "line 3: user 'a' appears twice",
             "a:scrypt$16384$8$1$zz$00\n": "line 1:",
             "a:scrypt$99999999$8$1$0011223344556677$00112233445566778899aabbccddeeff\n": "out of range",
             "# only comments\n": "holds no user"}
    for text, expected in cases.items():
        bad = tmp_path / "bad"
        bad.write_text(text)
        with pytest.raises(AuthError, match=expected.replace("$", r"\$")):
            read_auth_file(bad)
    with pytest.raises(AuthError, match="not found"):
        read_auth_file(tmp_path / "missing")
    with pytest.raises(AuthError, match="is a folder"):
        read_auth_file(tmp_path)


def test_user_names_that_would_break_the_file_are_refused():
    for name in ("", "a:b", " alice", "a\nb", "x" * 129):
        with pytest.raises(AuthError):
            login_line(name, "pw")
    with pytest.raises(AuthError, match="empty"):
        login_line("alice", "")


def test_the_environment_variable_names_the_login_file(tmp_path, monkeypatch):
    users = tmp_path / "users"
    users.write_text(login_line("alice", "pw") + "\n")
    monkeypatch.delenv(AUTH_FILE_ENV, raising=False)
    assert credentials_for(None) is None
    monkeypatch.setenv(AUTH_FILE_ENV, str(users))
    assert credentials_for(None).check("alice", "pw")
    with pytest.raises(AuthError, match="not found"):
        credentials_for(tmp_path / "other")  # the flag wins over the variable


def test_an_unknown_user_costs_as_much_as_a_wrong_password():
    creds = Credentials({"alice": PasswordHash.parse(hash_password("pw"))})

    def timed(user):
        started = time.perf_counter()
        for _ in range(3):
            creds.check(user, "wrong")
        return time.perf_counter() - started

    known, unknown = timed("alice"), timed("mallory")
    assert 0.5 < unknown / known < 2.0  # both run one scrypt; no early exit tells names apart


def test_the_servers_check_is_async_and_a_wrong_guess_waits():
    check = login_checker(Credentials({"alice": PasswordHash.parse(hash_password("pw"))}), delay_s=0.5)
    started = time.perf_counter()
    assert asyncio.run(check("alice", "pw")) is True
    fast = time.perf_counter() - started
    started = time.perf_counter()
    assert asyncio.run(check("alice", "nope")) is False
    assert time.perf_counter() - started >= 0.5 > fast
