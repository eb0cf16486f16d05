"""How the pages word a run: its state, why it ended (core/runs/failure.py's reason in the page's language),
and its figures (durations, sizes). Shared by the Train and Runs tabs."""
from __future__ import annotations

import html
import time

from core.runs import failure
from core.runs.history import clock
from webui import i18n


def state_text(state: str, lang: str) -> str:
    return i18n.text(f"state.{state}", lang)


def reason_html(status: dict | None, log_text: str, lang: str) -> str:
    """The reason a run failed (or was killed) with what to do, or "" when there is nothing to explain.
    Values quoted from the error (its type, message and traceback frames) stay as written."""
    reason = failure.explain(status or {}, log_text) if status else None
    if reason is None:
        return ""
    values = {k: html.escape(str(v)) for k, v in reason.values.items()}
    key = f"failure.{reason.key}"
    sentence = i18n.text(key, lang, **values) if i18n.has_text(key) else html.escape(reason.sentence)
    advice = i18n.text(f"{key}.advice", lang) if i18n.has_text(f"{key}.advice") else html.escape(reason.advice)
    kind = i18n.text(f"failure.kind.{reason.kind}", lang)
    frames = "".join(f"<div><code>{html.escape(frame)}</code></div>" for frame in reason.frames)
    return (f"<div class='run-reason' data-kind='{reason.kind}'><b>{html.escape(kind)}</b>: {sentence}"
            f"<div>{advice}</div>{frames}</div>")


duration_text = clock  # h:mm:ss, as the terminal's `app.py runs` shows it


def when_text(stamp: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(stamp)) if stamp else ""


def megabytes(size: float | None, digits: int = 1) -> float | None:
    return round(size / 1e6, digits) if size else None


def figure(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else float(f"{value:.{digits}g}")
