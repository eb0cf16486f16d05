"""Facts about this machine that explain why a process is gone: which boot we are in, how many processes
the kernel's out-of-memory killer has ended, and how much memory a process may use."""
from __future__ import annotations

import os
from pathlib import Path


def boot_id() -> str | None:
    """A random id the kernel draws at every boot: a run recorded under another id was cut by a restart."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def boot_time() -> float | None:
    """When this boot began (seconds since the epoch), from /proc/stat's btime."""
    try:
        for line in Path("/proc/stat").read_text().splitlines():
            if line.startswith("btime "):
                return float(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def oom_kill_count() -> int | None:
    """Processes the kernel's OOM killer has ended since boot (/proc/vmstat, Linux 4.13+), or None."""
    try:
        for line in Path("/proc/vmstat").read_text().splitlines():
            if line.startswith("oom_kill "):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def memory_limit_mb() -> float | None:
    """The memory a process here may use: the machine's, or a smaller cgroup (container) limit."""
    limits = []
    try:
        limits.append(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError):
        pass
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < 2**60:  # "max" or a huge number: no limit
            limits.append(int(text))
    return min(limits) / 2**20 if limits else None
