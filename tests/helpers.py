"""Shared helpers for the core tests: a tiny job spec and small waiting utilities."""
from __future__ import annotations

import contextlib
import copy
import time

from core.spec import spec_from_dict
from core.spec.parse import merge

# The smallest job that still exercises the real trainer end to end: 16 identity samples,
# 4 steps of 4 samples (exactly one epoch), a rank-4 adapter on every linear layer.
TINY_JOB = {
    "method": "lora",
    "data": {"dataset": "identity", "max_samples": 16, "max_length": 64},
    "train": {"max_steps": 4, "batch_size": 4, "learning_rate": 5e-3},
    "lora": {"r": 4, "alpha": 8},
}


# Per method: job sections merged over the tiny job, to keep each run small but valid
# (the method matrix test and the export merge check both use it).
METHOD_MATRIX = {
    "lora": {},
    "dora": {"lora": {"targets": ["query", "value"]}},
    "vera": {"vera": {"r": 64, "targets": ["query", "value"]}},
    # 2x the tiny model's 512 positions; groups of 16 tokens at max_length 64
    "longlora": {"longlora": {"target_context": 1024}, "lora": {"targets": ["query", "value"]}},
    "qlora": {},
    "qdora": {"lora": {"targets": ["query", "value"]}},
    "adalora": {"adalora": {"init_r": 4, "target_r": 2}},
}


def tiny_job(model_dir, **sections) -> dict:
    """The tiny job as plain data, pointed at `model_dir`; keyword sections are merged over it,
    e.g. tiny_job(d, train={"max_steps": 8})."""
    job = merge(copy.deepcopy(TINY_JOB), {"model": {"path": str(model_dir)}})
    return merge(job, sections)


def tiny_spec(model_dir, **sections):
    return spec_from_dict(tiny_job(model_dir, **sections))


def wait_until(predicate, timeout_s: float, what: str, poll_s: float = 0.2):
    """Poll `predicate` until it returns something truthy; fail naming `what` on timeout."""
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll_s)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


def wait_for_end(run, timeout_s: float = 180) -> dict:
    """runner.wait with a deadline, so a hung trainer fails the test instead of hanging the suite."""
    from core.runs import runner

    deadline = time.time() + timeout_s

    def give_up_when_late(status):
        if time.time() > deadline:
            raise AssertionError(f"run did not end within {timeout_s}s; last status {status}\n{run.log_tail(2000)}")

    return runner.wait(run, on_tick=give_up_when_late, poll_s=0.2)


def wait_for_step(run, step: int, timeout_s: float = 120) -> dict:
    """Wait until the trainer reports at least `step` steps done (and is still going)."""
    def reached():
        status = run.status()
        assert status["state"] in ("queued", "running"), f"run ended early: {status}\n{run.log_tail(2000)}"
        return status if status.get("step", 0) >= step else None

    return wait_until(reached, timeout_s, f"step {step}")


def free_port() -> int:
    """A TCP port nothing listens on now (the main node's port of a group run)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dead_pid() -> int:
    """A pid that names no process: a child that ran, ended and was reaped."""
    import subprocess

    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def kill_leftover_trainers(workspace) -> None:
    """Trainers run detached on purpose, so a failing test would leave one training; end each by its pid."""
    from core.runs.folder import list_runs

    for run in list_runs(workspace):
        if run.is_active():
            run.kill()


def train_spec(workspace, spec):
    """Train `spec` through the runner to completion and return its run folder."""
    from core.runs import runner

    run = runner.start(spec, workspace)
    status = wait_for_end(run)
    assert status["state"] == "completed", f"{status}\n{run.log_tail(3000)}"
    return run


def greedy_reference(model, tokenizer, question: str, max_new_tokens: int = 12) -> str:
    """The greedy answer computed in this process, to hold a worker's or an export's answer against."""
    import torch

    from core.chat.prompt import encode_prompt, end_token_ids

    inputs = encode_prompt(tokenizer, [{"role": "user", "content": question}])
    with torch.inference_mode():
        out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False,
                             eos_token_id=end_token_ids(tokenizer, model.generation_config),
                             pad_token_id=tokenizer.pad_token_id)
    return tokenizer.decode(out[0][inputs["input_ids"].shape[1]:], skip_special_tokens=True)


@contextlib.contextmanager
def small_tmpfs(mount_point, size: str = "24m", inodes: int | None = None):
    """A real small file system at `mount_point` (tmpfs), so writes fail with ENOSPC as on a full disk;
    `inodes` limits files and folders too (then creating one fails the same way). Skips the test where
    mounting is not allowed (not root)."""
    import subprocess
    from pathlib import Path

    import pytest

    Path(mount_point).mkdir(parents=True, exist_ok=True)
    options = f"size={size}" + (f",nr_inodes={inodes}" if inodes else "")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mount_point)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.strip()}")
    try:
        yield Path(mount_point)
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def fill_disk(folder) -> None:
    """Write zeros into `folder` until its file system is full."""
    from pathlib import Path

    with open(Path(folder) / "filler", "wb", buffering=0) as fh:
        try:
            while fh.write(b"\0" * 65536):
                pass
        except OSError:
            pass


def start_server(workspace, log_file, *args, env: dict | None = None, timeout_s: float = 120):
    """`python app.py serve --port P --workspace W *args` in its own process, once it accepts connections;
    returns (process, url on 127.0.0.1). The caller ends it with process.terminate()."""
    import os
    import socket
    import subprocess
    import sys
    from pathlib import Path

    from core.paths import PROJECT_ROOT

    port = free_port()
    with open(log_file, "wb") as log:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen([sys.executable, "app.py", "serve", "--port", str(port), "--workspace", str(workspace),
                                 *map(str, args)], cwd=PROJECT_ROOT, stdout=log, stderr=subprocess.STDOUT,
                                env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, f"http://127.0.0.1:{port}"
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(Path(log_file).read_text()) from None
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError(f"the server did not listen within {timeout_s}s:\n{Path(log_file).read_text()}")
