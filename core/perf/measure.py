"""How the benchmarks measure a training process, the same way for ours and for a peer tool.

Memory: the summed RSS of the process and all its descendants, polled every 50 ms from outside
(so a tool that forks workers is counted whole), next to the kernel's own peak for the largest
process (exact, but blind to children). The larger of the two is the figure compared.
Speed: the time at the end of each optimiser step and the non-padding tokens seen by then; rates are
taken from the end of the first step to the end of the last, so model loading and the first step's
warm-up (allocator, kernel choice) are left out alike for both tools.
"""
from __future__ import annotations

import os
import threading
import time

import psutil


class TreeWatch:
    """Peak summed RSS of a process tree, polled in a background thread until stop()."""

    def __init__(self, pid: int, interval_s: float = 0.05):
        self.pid, self.interval_s = pid, interval_s
        self.peak_bytes = 0
        self.loads: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def start(self) -> TreeWatch:
        self._thread.start()
        return self

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak_bytes

    def _poll(self) -> None:
        try:
            root = psutil.Process(self.pid)
        except psutil.NoSuchProcess:
            return
        last_load = 0.0
        while not self._stop.is_set():
            total = 0
            try:
                procs = [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                return
            for proc in procs:
                try:
                    total += proc.memory_info().rss
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    pass
            self.peak_bytes = max(self.peak_bytes, total)
            now = time.monotonic()
            if now - last_load >= 1.0:  # the load average moves slowly; once a second is plenty
                self.loads.append(os.getloadavg()[0])
                last_load = now
            self._stop.wait(self.interval_s)

    @property
    def mean_load(self) -> float | None:
        return round(sum(self.loads) / len(self.loads), 2) if self.loads else None


def step_rates(points: list[dict], samples_per_step: int) -> dict | None:
    """Rates between the first and the last step point ({"step", "t", "tokens"} each, in step order).

    The first point marks the end of the first measured step, so everything before it (loading, the
    warm-up step) is excluded; samples are counted as steps x samples per optimiser step.
    """
    if len(points) < 2:
        return None
    first, last = points[0], points[-1]
    seconds = last["t"] - first["t"]
    if seconds <= 0:
        return None
    steps = last["step"] - first["step"]
    tokens = last["tokens"] - first["tokens"]
    return {
        "from_step": first["step"] + 1,
        "to_step": last["step"],
        "seconds": round(seconds, 3),
        "samples": steps * samples_per_step,
        "tokens": tokens,
        "samples_per_s": steps * samples_per_step / seconds,
        "tokens_per_s": tokens / seconds,
        "step_s": seconds / steps,
    }
