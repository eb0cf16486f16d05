"""A time limit on rendering a model's chat template.

A chat template is a Jinja program shipped with the model, and transformers runs it in the calling process:
a loop in it (`{% for i in range(99999) %}{% for j in range(99999) %}...`) would hang the trainer before its
first step (where Stop is not yet listened to), a chat worker, or a page of the Data tab. Jinja compiles a
template into Python code whose file name is "<template>", so a trace function on the rendering thread sees
each line of that code run and raises once the deadline has passed. Only the template's own lines are
traced, only while it renders, and only on the thread that renders it; any thread may use this (the web
server renders in its worker threads, where a signal-based alarm cannot reach).

What a trace cannot stop is a single long operation in C, such as a string repeated a billion times; loops,
which are what hangs in practice, are stopped.
"""
from __future__ import annotations

import sys
import time
from contextlib import contextmanager

RENDER_LIMIT_S = 10.0  # ordinary templates render a conversation in well under a millisecond
TEMPLATE_FILE = "<template>"  # the file name Jinja gives code compiled from a string


class TemplateTimeout(RuntimeError):
    """The model's chat template did not finish rendering in time. Deliberately not a ValueError: callers
    that skip a sample on ValueError (a template that cannot place assistant turns) must not try the next
    sample and wait again."""


@contextmanager
def template_time_limit(seconds: float | None = None):
    """Raise TemplateTimeout inside any chat template rendered in this block that runs longer than `seconds`
    (default RENDER_LIMIT_S)."""
    seconds = RENDER_LIMIT_S if seconds is None else seconds
    deadline = time.monotonic() + seconds

    def on_line(frame, event, arg):
        if time.monotonic() > deadline:
            raise TemplateTimeout(
                f"the model's chat template did not finish rendering within {seconds:g} s (a loop in the template?); "
                "fix the template in the model folder (chat_template.jinja or tokenizer_config.json) or use another model")
        return on_line

    def on_call(frame, event, arg):
        return on_line if frame.f_code.co_filename == TEMPLATE_FILE else None

    previous = sys.gettrace()
    sys.settrace(on_call)
    try:
        yield
    finally:
        sys.settrace(previous)


def render_chat(tokenizer, messages: list[dict], seconds: float | None = None, **kwargs):
    """tokenizer.apply_chat_template(messages, **kwargs) within the render time limit."""
    with template_time_limit(seconds):
        return tokenizer.apply_chat_template(messages, **kwargs)
