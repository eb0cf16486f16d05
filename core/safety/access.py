"""Which files a caller may read and write: the rule the web server applies to every path a page names.

Someone who reaches the server (a browser, or a script calling its HTTP API) names datasets, registries,
uploads, runs and export folders as plain text. The server reads datasets only from its workspace, the
bundled data and folders the operator listed at start; takes uploads only from Gradio's own upload
folder; and writes exports only under the workspace's exports folder or a listed export root. A path is
judged after symlinks are followed, so a link inside a root that points outside it is outside.

The CLI is run by the user themself and may read and write whatever it names: it uses `AccessPolicy()`,
which allows everything. The policy is built once when the server starts and handed to each tab.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from core.paths import DATA_DIR

# Largest file a page may upload: uploads are copied into the workspace, and a bigger dataset belongs in a
# folder the operator lists with --data-root.
MAX_UPLOAD_BYTES = 2**30
# Gradio keeps its own copy of every upload in its upload folder; the Data tab copies what it takes into the
# workspace, so Gradio's copies are deleted once a day old (looked for hourly) instead of piling up.
UPLOAD_CACHE_CLEANUP = (3600, 86400)  # (how often, how old) in seconds


class AccessDenied(ValueError):
    """A path outside the folders this caller may use; the message names the path and those folders."""


def resolved(path: str | Path) -> Path:
    """The path as the file system will find it: user home expanded, relative to the working folder,
    symlinks followed (as far as they exist). AccessDenied for text no file system accepts (a NUL byte)."""
    try:
        return Path(os.path.abspath(Path(path).expanduser())).resolve()
    except (ValueError, RuntimeError) as err:  # embedded NUL; a user name ~nobody does not know
        raise AccessDenied(f"{str(path)[:80]!r} is not a usable path ({err})") from None


def inside(path: Path, roots: tuple[Path, ...]) -> bool:
    return any(path == root or root in path.parents for root in roots)


def roots_text(roots: tuple[Path, ...]) -> str:
    return ", ".join(str(r) for r in roots)


def named(what: str) -> str:
    return f"{what}: " if what else ""


@dataclass(frozen=True)
class AccessPolicy:
    """`None` for a set of roots means anywhere (the CLI). `blocked` paths are never read, even inside a root
    (the server's own login file). `remote_code` says whether a job may ask for code from a model folder."""

    read_roots: tuple[Path, ...] | None = None
    write_roots: tuple[Path, ...] | None = None
    upload_roots: tuple[Path, ...] | None = None
    blocked: tuple[Path, ...] = ()
    remote_code: bool = True

    @classmethod
    def for_server(cls, workspace: Path, data_roots=(), export_roots=(), upload_roots=(), blocked=(),
                   remote_code: bool = False) -> AccessPolicy:
        """The served UI's policy: datasets from the workspace, the bundled data and `data_roots`; exports
        into <workspace>/exports and `export_roots`; uploads only from `upload_roots` (Gradio's folder)."""
        workspace = resolved(workspace)
        return cls(read_roots=tuple(dict.fromkeys(resolved(p) for p in (workspace, DATA_DIR, *data_roots))),
                   write_roots=tuple(dict.fromkeys(resolved(p) for p in (workspace / "exports", *export_roots))),
                   upload_roots=tuple(resolved(p) for p in upload_roots),
                   blocked=tuple(resolved(p) for p in blocked), remote_code=remote_code)

    @property
    def restricted(self) -> bool:
        return self.read_roots is not None

    def read_refusal(self, path: str | Path, what: str = "") -> str | None:
        """Why `path` may not be read, or None. Decided from the path alone: nothing is opened or probed,
        so a refusal tells nothing about a file outside (not even whether it exists)."""
        if self.read_roots is None and not self.blocked:
            return None
        try:
            where = resolved(path)
        except AccessDenied as err:
            return f"{named(what)}{err}"
        if where in self.blocked:
            return f"{named(what)}{path} is not readable through the web UI"
        if self.read_roots is None or inside(where, self.read_roots):
            return None
        return (f"{named(what)}{path} is outside the folders this server reads from "
                f"({roots_text(self.read_roots)}); upload the file, copy it into the workspace, or start the "
                f"server with --data-root FOLDER")

    def check_read(self, path: str | Path, what: str = "") -> Path:
        refusal = self.read_refusal(path, what)
        if refusal:
            raise AccessDenied(refusal)
        return resolved(path)

    def check_write(self, path: str | Path, what: str = "") -> Path:
        """`path` resolved, or AccessDenied when the server may not write there."""
        where = resolved(path)
        if self.write_roots is None or inside(where, self.write_roots):
            return where
        raise AccessDenied(f"{named(what)}{path} is outside the folders this server writes exports to "
                           f"({roots_text(self.write_roots)}); leave it blank for a new folder under the "
                           f"workspace's exports, or start the server with --export-root FOLDER")

    def check_upload(self, path: str | Path) -> Path:
        """An uploaded file is taken only from the upload folder the web framework wrote it to."""
        where = resolved(path)
        if self.upload_roots is None or inside(where, self.upload_roots):
            return where
        raise AccessDenied("the uploaded file is not in the server's upload folder; upload it again")

    def remote_code_refusal(self, trust_remote_code: bool) -> str | None:
        """Why a job asking for code from its model folder may not run here, or None."""
        if not trust_remote_code or self.remote_code:
            return None
        return ("this server does not run code shipped in model folders; its operator can allow it by "
                "starting it with --allow-remote-code (or run the job with `app.py train`)")
