"""Who may use the web UI: the login rule, password hashes and the operator's login file.

On a loopback address only this machine's users reach the server, and no login is asked. On any other
address the server starts only with credentials: a login file (`serve --auth-file FILE`, or the file named
by $LORA_WORKBENCH_AUTH_FILE) of `user:hash` lines, each made by `python app.py passwd USER`. Then every
page, API call and upload needs a login.

Hashes are scrypt (memory-hard, so guessing costs memory as well as time) with a random salt, written as
one self-describing string: scrypt$<n>$<r>$<p>$<salt hex>$<hash hex>. A password never appears in the
file, in a command line or in the environment.
"""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

AUTH_FILE_ENV = "LORA_WORKBENCH_AUTH_FILE"
SCHEME = "scrypt"
N, R, P = 2**14, 8, 1  # about 16 MB and a few tens of milliseconds per check
SALT_BYTES, HASH_BYTES = 16, 32
# A login file is the operator's, but a typo there must not make each check take minutes or gigabytes.
MAX_N, MAX_R, MAX_P = 2**20, 32, 16
FAILED_LOGIN_DELAY_S = 1.0  # each wrong guess costs the guesser a second


class AuthError(ValueError):
    """The login file or a user name cannot be used; the message names the file and line."""


def is_loopback(host: str) -> bool:
    """Whether `host` is reachable only from this machine: 'localhost' or a loopback address (127.x, ::1)."""
    host = (host or "").strip().strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name or a wildcard: it may be reached from elsewhere


def check_user_name(user: str) -> str:
    if not user or user != user.strip() or any(c in user for c in ":\n\r\t") or len(user) > 128:
        raise AuthError(f"user name {user!r} must be 1-128 characters with no colon, tab, line break or "
                        "surrounding spaces")
    return user


def hash_password(password: str, salt: bytes | None = None) -> str:
    if not password:
        raise AuthError("the password is empty")
    salt = salt or secrets.token_bytes(SALT_BYTES)
    digest = hashlib.scrypt(password.encode("utf-8", "surrogatepass"), salt=salt, n=N, r=R, p=P, maxmem=0, dklen=HASH_BYTES)
    return f"{SCHEME}${N}${R}${P}${salt.hex()}${digest.hex()}"


def login_line(user: str, password: str) -> str:
    """One line of a login file: `user:hash`."""
    return f"{check_user_name(user)}:{hash_password(password)}"


@dataclass(frozen=True)
class PasswordHash:
    n: int
    r: int
    p: int
    salt: bytes
    digest: bytes

    @classmethod
    def parse(cls, text: str) -> PasswordHash:
        parts = text.strip().split("$")
        if len(parts) != 6 or parts[0] != SCHEME:
            raise AuthError(f"not a password hash made by `app.py passwd` (expected {SCHEME}$n$r$p$salt$hash)")
        try:
            n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
            salt, digest = bytes.fromhex(parts[4]), bytes.fromhex(parts[5])
        except ValueError:
            raise AuthError("the password hash holds something that is not a number or hex digits") from None
        if not (1 < n <= MAX_N and n & (n - 1) == 0 and 1 <= r <= MAX_R and 1 <= p <= MAX_P):
            raise AuthError(f"scrypt parameters n={n}, r={r}, p={p} are out of range (n a power of two up to "
                            f"{MAX_N}, r up to {MAX_R}, p up to {MAX_P})")
        if len(salt) < 8 or len(digest) < 16:
            raise AuthError("the salt or the hash is too short")
        return cls(n, r, p, salt, digest)

    def matches(self, password: str) -> bool:
        computed = hashlib.scrypt(password.encode("utf-8", "surrogatepass"), salt=self.salt, n=self.n, r=self.r,
                                  p=self.p, maxmem=0, dklen=len(self.digest))
        return hmac.compare_digest(computed, self.digest)  # constant time: no hint of how close a guess was


@dataclass
class Credentials:
    """The users of a login file and their hashes."""

    users: dict[str, PasswordHash]
    source: str = ""
    # Checked for a user who does not exist, so an unknown name takes as long as a wrong password.
    _decoy: PasswordHash = field(default_factory=lambda: PasswordHash.parse(hash_password(secrets.token_hex(16))))

    def check(self, user: str, password: str) -> bool:
        known = self.users.get(user)
        matched = (known or self._decoy).matches(password or "")
        return matched and known is not None


def read_auth_file(path: str | Path) -> Credentials:
    """The login file's users, or AuthError naming the file and the line at fault."""
    path = Path(path).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise AuthError(f"login file {path} not found") from None
    except IsADirectoryError:
        raise AuthError(f"login file {path} is a folder") from None
    except UnicodeDecodeError:
        raise AuthError(f"login file {path} is not UTF-8 text") from None
    except OSError as err:
        raise AuthError(f"login file {path} cannot be read: {err.strerror or err}") from None
    users: dict[str, PasswordHash] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        user, sep, hashed = line.partition(":")
        try:
            if not sep:
                raise AuthError("expected user:hash (make the line with `python app.py passwd USER`)")
            check_user_name(user)
            if user in users:
                raise AuthError(f"user {user!r} appears twice")
            users[user] = PasswordHash.parse(hashed)
        except AuthError as err:
            raise AuthError(f"{path} line {number}: {err}") from None
    if not users:
        raise AuthError(f"login file {path} holds no user (add lines made by `python app.py passwd USER`)")
    return Credentials(users, str(path))


def credentials_for(auth_file: str | Path | None) -> Credentials | None:
    """The credentials asked for: --auth-file, else $LORA_WORKBENCH_AUTH_FILE, else None."""
    chosen = auth_file or os.environ.get(AUTH_FILE_ENV) or None
    return read_auth_file(chosen) if chosen else None


def serve_refusal(host: str, credentials: Credentials | None) -> str | None:
    """Why the server may not start on `host` as asked, or None."""
    if credentials is not None or is_loopback(host):
        return None
    return (f"serving on {host} would let anyone who reaches this machine use the workbench (read its data, "
            f"train, export), so a login is needed: give --auth-file FILE (lines made by `python app.py passwd "
            f"USER >> FILE`) or set {AUTH_FILE_ENV}=FILE; or serve on 127.0.0.1 and reach it through an SSH tunnel")


def login_checker(credentials: Credentials, delay_s: float = FAILED_LOGIN_DELAY_S):
    """An async (user, password) -> bool check for the web server's login. Checks run one at a time in a worker
    thread (scrypt is deliberately slow and must not stall the server), and a wrong guess answers only after
    `delay_s`, so guessing is slow however many requests are sent."""
    lock = asyncio.Lock()

    async def check(user: str, password: str) -> bool:
        async with lock:
            ok = await asyncio.to_thread(credentials.check, user, password)
        if not ok:
            await asyncio.sleep(delay_s)
        return ok

    return check
