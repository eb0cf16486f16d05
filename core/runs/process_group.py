"""A worker's process group: who is still in it, and ending all of it.

A detached worker leads its own session and process group (core/runs/launch.py), and everything it
starts (the trainer under its supervisor, data loader workers, `accelerate launch` ranks) stays in that
group unless it leaves on purpose. So "end the job" means "end the group": SIGTERM to every member,
then SIGKILL to whatever is still there after a grace period. Members are found in /proc, not with
kill(-pgid, 0), because a member that has exited but was not yet reaped (a zombie) still answers that,
while it holds no memory and does no work.
"""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path

DEFAULT_GRACE_S = 10.0
KILL_WAIT_S = 30.0


def process_state(pid: int) -> tuple[str, int] | None:
    """(state letter, process group id) of a process from /proc, or None when there is no such process."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (OSError, ValueError):
        return None
    fields = text.rsplit(") ", 1)[1].split()
    return fields[0], int(fields[2])  # state, ppid, pgrp ... after the command name


def exit_status_of_zombie(pid: int | None) -> int | None:
    """How a process that has exited but was not yet reaped ended, as subprocess words it (-N: killed by
    signal N; N >= 0: exit code), from /proc/PID/stat's exit_code; None when it is not such a process."""
    if not pid:
        return None
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (OSError, ValueError):
        return None
    fields = text.rsplit(") ", 1)[1].split()
    if fields[0] != "Z" or len(fields) < 50:
        return None
    status = int(fields[-1])  # the last field (52nd of the line) is the wait status
    return -(status & 0x7F) if status & 0x7F else (status >> 8) & 0xFF


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes whose process group is `pgid`."""
    members = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        found = process_state(int(entry.name))
        if found and found[1] == pgid and found[0] not in ("Z", "X"):
            members.append(int(entry.name))
    return members


def signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def end_group(pgid: int, grace_s: float = DEFAULT_GRACE_S, poll_s: float = 0.1) -> str:
    """SIGTERM the group, SIGKILL what is left after `grace_s`; returns how it ended: "gone" (nothing was
    there), "terminated" (ended on SIGTERM) or "killed" (needed SIGKILL). Returns once no member is left."""
    if not group_members(pgid):
        return "gone"
    signal_group(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if not group_members(pgid):
            return "terminated"
        time.sleep(poll_s)
    signal_group(pgid, signal.SIGKILL)
    # SIGKILL cannot be refused; this waits only for the kernel to tear the processes down (bounded: a
    # process stuck in the kernel, e.g. on a dead network disk, ends only when the kernel lets it).
    deadline = time.monotonic() + KILL_WAIT_S
    while group_members(pgid) and time.monotonic() < deadline:
        time.sleep(poll_s)
    return "killed"
