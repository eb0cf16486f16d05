"""Start a chat worker process and talk to it; used by the Chat tab and the tests.

The worker's replies are read by a thread into a queue, so a caller can wait with a timeout
and notice a worker that died mid-answer (out of memory, a crash in a kernel) instead of
blocking forever. Its stderr goes to a log file, never to a pipe nobody drains.
"""
from __future__ import annotations

import json
import os
import queue
import subprocess
import threading
import time
from pathlib import Path

from core.chat.worker import STOP_SIGNAL
from core.runs.job_folder import tail_text
from core.runs.launch import LaunchError, launch

# Chat models one server keeps loaded at once: each worker holds a whole model in memory, and every page
# (or API session) may start one.
MAX_WORKERS = 4


class ChatWorkerError(RuntimeError):
    """The worker refused a request or died; the message says why (with its log's tail when it died)."""


def check_capacity(clients, asking, limit: int = MAX_WORKERS) -> None:
    """ChatWorkerError when `limit` workers other than `asking`'s are alive: one more model would not be loaded."""
    others = sum(1 for client in clients if client is not asking and client.alive())
    if others >= limit:
        raise ChatWorkerError(f"{others} chat models are loaded by other pages, and at most {limit} are kept at once "
                              "(each holds a whole model in memory); press Unload there, or close those pages")


class ChatClient:
    def __init__(self, log_file: Path):
        self.log_file = Path(log_file)
        self.proc: subprocess.Popen | None = None
        self.replies: queue.Queue = queue.Queue()
        self.lock = threading.Lock()  # one request at a time: the worker answers them in order
        self.loaded: dict | None = None  # the last "loaded" reply, with what was asked for
        self.request_id = 0
        self.generating = False  # an answer is being generated now (the worker may be signalled to stop)
        self.stop_asked = threading.Event()  # Stop was pressed since the current turn began

    # --- process --------------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout_s: float = 60) -> None:
        try:
            self.proc = launch("core.chat.worker", [], self.log_file, piped=True)
        except LaunchError as err:
            raise ChatWorkerError(str(err)) from err
        self.replies = queue.Queue()
        threading.Thread(target=self._read, args=(self.proc, self.replies), daemon=True).start()
        self._next(timeout_s)  # the "ready" line

    @staticmethod
    def _read(proc, replies) -> None:
        for line in proc.stdout:
            replies.put(json.loads(line))
        replies.put(None)  # end of stream: the process is gone

    def _next(self, timeout_s: float) -> dict:
        deadline = time.time() + timeout_s
        while True:
            try:
                reply = self.replies.get(timeout=min(1.0, max(0.01, deadline - time.time())))
            except queue.Empty:
                if time.time() > deadline:
                    raise ChatWorkerError(f"the chat worker did not answer within {timeout_s:.0f}s") from None
                continue
            if reply is None:
                self.proc.wait(timeout=10)
                code = self.proc.returncode
                self.loaded = None
                raise ChatWorkerError(f"the chat worker process ended (exit code {code}); "
                                      f"end of its log:\n{self.log_tail()}")
            if reply.get("event") == "error":
                raise ChatWorkerError(f"{reply['kind']}: {reply['message']}")
            return reply

    def _send(self, request: dict) -> None:
        if not self.alive():
            raise ChatWorkerError("no chat model is loaded")
        try:
            self.proc.stdin.write((json.dumps(request) + "\n").encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            raise ChatWorkerError(f"the chat worker process has ended; end of its log:\n{self.log_tail()}") from None

    def log_tail(self, max_bytes: int = 3000) -> str:
        return tail_text(self.log_file, max_bytes)

    # --- requests -------------------------------------------------------------------
    def load(self, run: str | None = None, base: str | None = None, device: str = "cpu",
             timeout_s: float = 600) -> dict:
        """Load a run (base + adapter) or a bare base model, in a fresh worker: the old one ends first."""
        self.unload()
        with self.lock:
            self.start()
            self._send({"op": "load", "run": run, "base": base, "device": device})
            reply = self._next(timeout_s)
        self.loaded = {**reply, "run": run, "base": base}
        return self.loaded

    def generate(self, messages: list[dict], params: dict | None = None, adapter: bool = True,
                 timeout_s: float = 600):
        """Yield the answer's text pieces as they come; the last item is the worker's "done" reply (a dict)."""
        with self.lock:
            self.request_id += 1
            rid = self.request_id
            self._send({"op": "generate", "id": rid, "messages": messages, "params": params or {}, "adapter": adapter})
            self.generating = True
            try:
                while True:
                    reply = self._next(timeout_s)
                    if reply.get("id") != rid:
                        continue  # the rest of an answer whose reader went away (a closed page)
                    if reply["event"] == "token":
                        yield reply["text"]
                    elif reply["event"] == "done":
                        yield reply
                        return
            finally:
                self.generating = False

    def new_turn(self) -> None:
        """A new message is being answered: an earlier Stop no longer applies."""
        self.stop_asked.clear()

    def stop(self) -> bool:
        """Ask the worker to end the answer it is generating now, after its current token; True when one was.
        The request goes as a signal: the worker reads stdin only between requests."""
        self.stop_asked.set()
        proc = self.proc
        if not self.generating or proc is None or proc.poll() is not None:
            return False
        try:
            os.kill(proc.pid, STOP_SIGNAL)
        except ProcessLookupError:
            return False
        return True

    def unload(self, timeout_s: float = 30) -> None:
        """End the worker process: all of its memory goes back to the system."""
        proc, self.proc, self.loaded = self.proc, None, None
        if proc is None or proc.poll() is not None:
            return
        try:
            proc.stdin.write(b'{"op": "quit"}\n')
            proc.stdin.flush()
            proc.wait(timeout=timeout_s)
        except (BrokenPipeError, OSError, subprocess.TimeoutExpired):
            proc.kill()  # busy generating or stuck: it holds nothing worth saving
            proc.wait(timeout=timeout_s)
