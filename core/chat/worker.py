"""The chat worker process: `python -m core.chat.worker`.

It holds one model and answers requests, one JSON object per line on stdin; it replies one
JSON object per line on its own stdout channel. Library output (warnings, progress bars) goes
to stderr, which the client sends to a log file, so nothing can corrupt the protocol.

Requests:  {"op": "load", "run": RUN_FOLDER} or {"op": "load", "base": MODEL}
           {"op": "generate", "messages": [...], "params": {...}, "adapter": true|false}
           {"op": "quit"}
Replies:   {"event": "ready"} once; {"event": "loaded", ...}; {"event": "token", "text"} while
           generating, then {"event": "done", ..., "stopped": null | "stop" | "time_limit"};
           {"event": "error", "kind", "message"} on failure.
Stop:      SIGUSR1 ends the answer being generated after its current token (stdin is read only between
           requests, so the request to stop comes on this side channel).
Unloading is ending this process, the only way the memory really goes back to the system.

Every answer is bounded: the conversation's length in characters and tokens (checked before the model reads
it), the chat template's render time, and the answer's generation time (GenerationOptions).
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time

STOP_SIGNAL = signal.SIGUSR1


class PromptTooLong(ValueError):
    """The conversation is longer than a limit; the message names the limit and its option."""


def rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


class Worker:
    def __init__(self, send):
        self.send = send
        self.model = None
        self.tokenizer = None
        self.has_adapter = False
        self.stop_requested = False  # set by STOP_SIGNAL; seen by the answer being generated

    def request_stop(self, *_) -> None:
        self.stop_requested = True

    def check_prompt(self, messages: list[dict], options) -> dict:
        """The conversation's token ids, or PromptTooLong naming the limit it passes."""
        from core.chat.prompt import encode_prompt

        chars = sum(len(str(m.get("content") or "")) for m in messages)
        if chars > options.max_prompt_chars:
            raise PromptTooLong(f"the conversation is {chars:,} characters, more than generation.max_prompt_chars "
                                f"({options.max_prompt_chars:,}); clear the chat or send a shorter message")
        inputs = encode_prompt(self.tokenizer, messages)  # within the chat template's render time limit
        tokens = int(inputs["input_ids"].shape[1])
        context = getattr(self.model.config.get_text_config(), "max_position_embeddings", None)
        if tokens > options.max_prompt_tokens:
            raise PromptTooLong(f"the conversation is {tokens:,} tokens, more than generation.max_prompt_tokens "
                                f"({options.max_prompt_tokens:,}); clear the chat or send a shorter message")
        if context and tokens >= context:
            raise PromptTooLong(f"the conversation is {tokens:,} tokens and this model reads at most {context:,}; "
                                "clear the chat or send a shorter message")
        return inputs

    def load(self, request: dict) -> None:
        from core.models.adapter import check_run, load_base_only, load_run_model
        from core.spec import load_spec
        from core.training.process import leave_out_bitsandbytes

        started = time.time()
        device = request.get("device", "cpu")
        # A worker serves one load (the client starts a fresh one for the next), so what it imports may follow it.
        if request.get("run"):
            run = check_run(request["run"])
            spec = load_spec(str(run.job))
            leave_out_bitsandbytes(spec.model.path, spec.method)
            self.model, self.tokenizer, _ = load_run_model(run, device)
            self.has_adapter = True
        else:
            leave_out_bitsandbytes(request["base"])
            self.model, self.tokenizer = load_base_only(request["base"], device)
            self.has_adapter = False
        self.send({"event": "loaded", "has_adapter": self.has_adapter, "rss_mb": round(rss_mb(), 1),
                   "load_s": round(time.time() - started, 2), "pid": os.getpid()})

    def generate(self, request: dict) -> None:
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList, TextStreamer

        from core.chat.options import GenerationOptions
        from core.chat.prompt import end_token_ids
        from core.options import build_options

        if self.model is None:
            raise RuntimeError("no model is loaded")
        use_adapter = bool(request.get("adapter"))
        if use_adapter and not self.has_adapter:
            raise RuntimeError("the loaded model has no adapter")
        # Checked against the declaration: a bad value is refused naming the option, and what is left out
        # takes the same default the Chat tab shows.
        options = build_options(GenerationOptions, request.get("params") or {})
        self.stop_requested = False  # a Stop meant for an earlier answer does not end this one
        started = time.time()
        inputs = self.check_prompt(request["messages"], options).to(self.model.device)
        rid = request.get("id")
        worker = self

        class StopWhenAsked(StoppingCriteria):
            """Ends the answer after the current token on Stop, or once the time limit has passed."""

            reason: str | None = None

            def __call__(self, input_ids, scores, **kwargs):
                if self.reason is None and worker.stop_requested:
                    self.reason = "stop"
                elif self.reason is None and time.time() - started > options.time_limit_s:
                    self.reason = "time_limit"
                return torch.full((input_ids.shape[0],), self.reason is not None, dtype=torch.bool, device=input_ids.device)

        stopper = StopWhenAsked()

        def send(obj: dict) -> None:
            self.send({**obj, "id": rid})

        class LineStreamer(TextStreamer):
            """Sends each piece of finished text as it is decoded (whole words, no broken characters)."""

            def on_finalized_text(self, text: str, stream_end: bool = False):
                if text:
                    send({"event": "token", "text": text})

        kwargs = dict(max_new_tokens=options.max_new_tokens, do_sample=options.sampling,
                      repetition_penalty=options.repetition_penalty,
                      eos_token_id=end_token_ids(self.tokenizer, self.model.generation_config),
                      pad_token_id=self.tokenizer.pad_token_id or self.tokenizer.eos_token_id,
                      streamer=LineStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True),
                      stopping_criteria=StoppingCriteriaList([stopper]))
        if options.sampling:
            kwargs.update(temperature=options.temperature, top_p=options.top_p, top_k=options.top_k)
        else:  # greedy: unset the sampling knobs a generation config may carry, so none is warned about
            kwargs.update(temperature=None, top_p=None, top_k=None)
        # The same seed before each column makes base and fine-tuned differ only by the adapter.
        torch.manual_seed(options.seed)
        off = self.model.disable_adapter() if self.has_adapter and not use_adapter else contextlib.nullcontext()
        with off, torch.inference_mode():
            out = self.model.generate(**inputs, **kwargs)
        new = out[0][inputs["input_ids"].shape[1]:]
        send({"event": "done", "text": self.tokenizer.decode(new, skip_special_tokens=True),
                   "tokens": int(new.shape[0]), "token_ids": new.tolist(), "seconds": round(time.time() - started, 3),
                   "rss_mb": round(rss_mb(), 1), "stopped": stopper.reason, "time_limit_s": options.time_limit_s})


def main() -> int:
    # Keep the real stdout for the protocol; point fd 1 at stderr so stray prints cannot break it.
    channel = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    def send(obj: dict) -> None:
        channel.write(json.dumps(obj) + "\n")
        channel.flush()

    worker = Worker(send)
    signal.signal(STOP_SIGNAL, worker.request_stop)  # before "ready": the client signals only a ready worker
    handlers = {"load": worker.load, "generate": worker.generate}
    send({"event": "ready", "pid": os.getpid()})
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        if request.get("op") == "quit":
            break
        try:
            handlers[request.get("op")](request)
        except Exception as err:  # report it and keep serving: a bad request must not end the session
            import traceback

            traceback.print_exc()
            send({"event": "error", "kind": type(err).__name__, "message": str(err)[:2000]})
    return 0


if __name__ == "__main__":
    sys.exit(main())
