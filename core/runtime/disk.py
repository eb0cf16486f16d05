"""A full disk, named: how much space is free, whether an error means "no space", and what a run needs.

A disk that fills during training raises OSError(ENOSPC) from whatever happened to write (a checkpoint,
a metrics line, a print into train.log). The trainer reports that as the failure kind `DiskFull` with the
free space found, and the launch checks warn beforehand when the run's outputs would not fit.
"""
from __future__ import annotations

import errno
import shutil
from pathlib import Path

FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


class DiskFull(OSError):
    """The disk (or quota) ran out while writing; the message says where and how much is free."""

    def __init__(self, message: str):
        super().__init__(errno.ENOSPC, message)
        self.message = message

    def __str__(self) -> str:
        return self.message


# How libraries written in Rust (tokenizers, safetensors) word the same errors: a plain Exception whose
# message carries the OS error, e.g. "No space left on device (os error 28)".
FULL_MESSAGES = tuple(f"(os error {n})" for n in FULL_ERRNOS) + ("No space left on device", "Disk quota exceeded")


def is_disk_full(err: BaseException) -> bool:
    """True for "no space left" and "quota exceeded", however deeply a library wrapped them."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, OSError) and err.errno in FULL_ERRNOS:
            return True
        if any(text in str(err)[:2000] for text in FULL_MESSAGES):
            return True
        err = err.__cause__ or err.__context__
    return False


def free_bytes(path: Path) -> int | None:
    """Free bytes for an unprivileged writer on the file system holding `path` (or its nearest existing parent)."""
    path = Path(path).absolute()
    for folder in (path, *path.parents):
        if folder.exists():
            try:
                return shutil.disk_usage(folder).free
            except OSError:
                return None
    return None


def human_size(size: float) -> str:
    for unit in ("bytes", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} GB"


def disk_full(path: Path, doing: str) -> DiskFull:
    """The DiskFull error for a write under `path` that ran out of space while `doing` something."""
    free = free_bytes(path)
    where = f"{human_size(free)} free" if free is not None else "free space unknown"
    return DiskFull(f"the disk holding {path} is full ({where}) while {doing}; free some space and start again "
                    "(a resumable checkpoint, if any, is kept)")


def space_note(path: Path, needed: int, what: str) -> str | None:
    """A warning when `needed` bytes (for `what`) exceed the free space under `path`; None when they fit."""
    free = free_bytes(path)
    if free is None or free >= needed:
        return None
    return (f"only {human_size(free)} is free under {path}, and this run is expected to write about "
            f"{human_size(needed)} ({what}); it will fail with DiskFull when the disk fills")


def make_folder(path: Path) -> str | None:
    """Create `path` (and its parents) if missing; on a full disk or a read-only one, return why it could not
    be made instead of raising, so the UI still starts and says so."""
    try:
        Path(path).mkdir(parents=True, exist_ok=True)
        return None
    except OSError as err:
        return f"the workspace {path} could not be created ({err.strerror}); runs cannot start until that is fixed"
