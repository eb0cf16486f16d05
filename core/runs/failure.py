"""Why a run ended badly, in plain words, with what to do about it.

Two halves:

- `death_verdict`: what to write into status.json when the trainer ended WITHOUT reporting (killed by a
  signal, by the kernel's out-of-memory killer, by Kill, by a restart of the machine). Whoever sees the
  death first writes it: the trainer's supervisor at once (it knows the exit signal), else the scheduler or
  the next reader (they only see that the pid is gone).
- `explain`: turn any run's recorded error (a verdict above, or an exception the trainer reported itself)
  into a Reason: a kind from the table below, one sentence, advice, and for an unexpected exception the
  last frames of its traceback.

Sentences are English here (the CLI, status.json); the UI says them in the page's language from the locale
entries `failure.<key>` and `failure.<key>.advice`, filled with the same values.
"""
from __future__ import annotations

import re
import signal
import time
from dataclasses import dataclass, field

from core.runs import host

MEMORY_ADVICE = ("Lower train.batch_size or data.max_length, turn on train.gradient_checkpointing, or use QLoRA "
                 "(a 4-bit base); then resume or start again.")

# key: (kind, sentence, advice). The kind is what the run's reason is filed under (and what `runs --json`
# reports); the key picks the wording.
REASONS: dict[str, tuple[str, str, str]] = {
    "oom_gpu": ("OutOfMemory", "Out of GPU memory at step {step}: {message}", MEMORY_ADVICE),
    "oom_cpu": ("OutOfMemory", "Out of memory at step {step}: {message}", MEMORY_ADVICE),
    "oom_killer": ("OutOfMemory",
                   "Out of memory: the kernel's out-of-memory killer ended the trainer (signal 9) at step {step}; "
                   "it was using {memory_mb} MB of the {limit_mb} MB this machine allows.", MEMORY_ADVICE),
    "non_finite": ("NonFiniteLoss", "The loss stopped being a finite number (NaN or infinity): {message}",
                   "Lower train.learning_rate, keep train.max_grad_norm on (e.g. 1.0), or train in fp32, then start "
                   "again: resuming with the same settings repeats the same steps."),
    "disk_full": ("DiskFull", "The disk filled up: {message}",
                  "Free some space (the Runs tab shows each run's size and deletes old runs), then resume."),
    "signal": ("KilledBySignal", "The trainer was killed by signal {signal} ({signal_name}) at step {step}.",
               "Something outside the workbench ended it: a user, a job scheduler or a shutdown. Resume continues "
               "from the last checkpoint."),
    "killed": ("Killed", "Ended by Kill at step {step}.", "Resume continues from the last checkpoint."),
    "restart": ("MachineRestart", "Interrupted by a restart of the machine at step {step}.",
                "Resume continues from the last checkpoint."),
    "data": ("DataError", "The data could not be read: {type}: {message}",
             "Check the dataset in the Data tab or with `app.py data check`, fix it, and start again."),
    "model": ("ModelLoadError", "The model could not be loaded: {type}: {message}",
              "Check model.path (a folder with config.json, weights and a tokenizer, or a hub id with a network) "
              "and model.init_adapter, then start again."),
    "died_code": ("ProcessDied", "The trainer exited with code {code} at step {step} without reporting why.",
                  "Its last words are at the end of train.log. Resume continues from the last checkpoint."),
    "died": ("ProcessDied", "The trainer process ended without reporting at step {step} (its exit status was not "
                            "seen); see train.log.",
             "Its last words are at the end of train.log. Resume continues from the last checkpoint."),
    "exception": ("Exception", "{type}: {message}",
                  "The traceback's last frames are below; train.log has all of it."),
}

TRACEBACK_FRAMES = 3


@dataclass
class Reason:
    key: str                       # which entry of REASONS words it
    values: dict = field(default_factory=dict)
    frames: list[str] = field(default_factory=list)  # the last traceback frames, for an unexpected exception

    @property
    def kind(self) -> str:
        return REASONS[self.key][0]

    @property
    def sentence(self) -> str:
        return REASONS[self.key][1].format_map(_Blank(self.values))

    @property
    def advice(self) -> str:
        return REASONS[self.key][2]

    def to_dict(self) -> dict:
        return {"kind": self.kind, "key": self.key, "sentence": self.sentence, "advice": self.advice,
                "frames": self.frames}


class _Blank(dict):
    """format_map values where a missing one reads as '?', so a sentence never fails to print."""

    def __missing__(self, key):
        return "?"


# --- the death of a trainer that did not report ------------------------------------------------------

def machine_restarted(status: dict) -> bool:
    """True when the run was launched in an earlier boot of this machine: its process cannot exist now,
    whatever holds its pid today."""
    recorded, now = status.get("boot_id"), host.boot_id()
    if recorded and now:
        return recorded != now
    started, booted = status.get("started_at"), host.boot_time()
    return bool(started and booted and started < booted)


def signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def oom_killed(status: dict, records: list[dict]) -> dict | None:
    """Evidence that a SIGKILL came from the kernel's out-of-memory killer: its counter moved since the
    trainer started, or the trainer's memory had climbed to within 10% of what the machine allows.
    Returns the figures for the sentence, or None."""
    memory = [r["memory_mb"] for r in records if r.get("memory_mb")]
    last = memory[-1] if memory else None
    limit = host.memory_limit_mb()
    before, now = status.get("oom_kills_at_start"), host.oom_kill_count()
    counted = before is not None and now is not None and now > before
    near_limit = bool(last and limit and last >= 0.9 * limit and (len(memory) < 2 or memory[-1] >= memory[0]))
    if counted or near_limit:
        return {"memory_mb": round(last) if last else "?", "limit_mb": round(limit) if limit else "?"}
    return None


def death_reason(status: dict, returncode: int | None, records: list[dict]) -> tuple[str, Reason]:
    """(final state, reason) for a trainer that ended without writing its own verdict."""
    step = status.get("step") or 0
    if status.get("kill_requested_at"):
        return "stopped", Reason("killed", {"step": step})
    if machine_restarted(status):
        return "failed", Reason("restart", {"step": step})
    if returncode is not None and returncode < 0:
        number = -returncode
        if number == signal.SIGKILL:
            evidence = oom_killed(status, records)
            if evidence:
                return "failed", Reason("oom_killer", {"step": step, **evidence})
        return "failed", Reason("signal", {"step": step, "signal": number, "signal_name": signal_name(number)})
    if returncode is not None:
        return "failed", Reason("died_code", {"step": step, "code": returncode})
    return "failed", Reason("died", {"step": step})


def death_verdict(status: dict, returncode: int | None, records: list[dict]) -> dict:
    """The status changes that record such a death: state, ended_at and an error that `explain` reads back."""
    state, reason = death_reason(status, returncode, records)
    return {"state": state, "ended_at": time.time(),
            "error": {"kind": reason.kind, "key": reason.key, "values": reason.values, "message": reason.sentence}}


# --- any recorded error, in plain words ----------------------------------------------------------------

GPU_OOM_MESSAGES = ("CUDA out of memory", "CUDA error: out of memory", "MPS backend out of memory")
CPU_OOM_MESSAGES = ("not enough memory", "can't allocate memory", "Cannot allocate memory")
DISK_MESSAGES = ("No space left on device", "Disk quota exceeded", "(os error 28)", "(os error 122)")


def explain(status: dict, log_text: str = "") -> Reason | None:
    """The reason a run ended as it did, or None when there is nothing to explain (no error recorded)."""
    error = status.get("error")
    if not error:
        return None
    if error.get("key") in REASONS:  # a verdict written by death_verdict
        return Reason(error["key"], dict(error.get("values") or {}))
    kind, message = str(error.get("kind") or "Error"), str(error.get("message") or "")
    values = {"step": status.get("step") or 0, "type": kind, "message": message}
    if kind == "OutOfMemoryError" or any(m in message for m in GPU_OOM_MESSAGES):
        return Reason("oom_gpu", values)
    if kind == "MemoryError" or any(m in message for m in CPU_OOM_MESSAGES):
        return Reason("oom_cpu", values)
    if kind == "NonFiniteLoss":
        return Reason("non_finite", values)
    if kind == "DiskFull" or any(m in message for m in DISK_MESSAGES):
        return Reason("disk_full", values)
    if kind == "ProcessDied":  # a verdict written before reasons had keys
        return Reason("died", values)
    phase = status.get("phase")
    if phase in ("data", "model"):
        return Reason(phase, values)
    return Reason("exception", values, frames=last_frames(log_text))


FRAME = re.compile(r'^\s*File "(?P<file>[^"]+)", line (?P<line>\d+), in (?P<func>.+)$')


def last_frames(log_text: str, count: int = TRACEBACK_FRAMES) -> list[str]:
    """The last `count` frames of the last traceback in a log, as 'file:line in function: code'."""
    start = log_text.rfind("Traceback (most recent call last):")
    if start < 0:
        return []
    lines = log_text[start:].splitlines()[1:]
    frames = []
    for index, line in enumerate(lines):
        match = FRAME.match(line)
        if not match:
            if frames and not line.startswith(" "):
                break  # the exception line ends the traceback
            continue
        code = lines[index + 1].strip() if index + 1 < len(lines) and not FRAME.match(lines[index + 1]) else ""
        where = short_path(match["file"])
        frames.append(f"{where}:{match['line']} in {match['func']}" + (f": {code}" if code else ""))
    return frames[-count:]


def short_path(path: str) -> str:
    """A frame's file without the long prefix of an installed package's or this project's folder."""
    for marker in ("site-packages/", "/core/", "/webui/"):
        at = path.rfind(marker)
        if at >= 0:
            return path[at + len(marker):] if marker == "site-packages/" else path[at + 1:]
    return path
