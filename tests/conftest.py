"""Fixtures shared by the tests: a tiny Llama built in the session, a fresh workspace, and the quickstart
run on the bundled model trained once per session for every test that only needs it finished."""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

# Nothing in the test suite may reach a network; trainer subprocesses inherit this too.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest  # noqa: E402

from tests.helpers import METHOD_MATRIX, kill_leftover_trainers, tiny_spec, train_spec  # noqa: E402


def pytest_collection_modifyitems(config, items):
    """Tests marked `gpu` run where a CUDA GPU is visible; elsewhere they are skipped with the reason, so
    `pytest -rs` lists what did not run here."""
    gpu_tests = [item for item in items if item.get_closest_marker("gpu")]
    if not gpu_tests:
        return
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU; none is visible on this machine")
    for item in gpu_tests:
        item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def end_warm_hosts():
    """The warm hosts this session's runs started (core/runs/warm_start.py) leave with it rather than idling
    for minutes after it; this ends every host of the user, so a server of theirs starts its next run cold."""
    yield
    from core.runs.warm_start import stop_hosts

    stop_hosts()


@pytest.fixture
def own_runtime(monkeypatch):
    """A runtime folder of this test's own, so it starts and ends its own host (short: a socket's path
    has room for 107 bytes, which pytest's folders can pass)."""
    from core.runs import warm_start

    monkeypatch.delenv(warm_start.WARM_ENV, raising=False)
    with tempfile.TemporaryDirectory(prefix="rt-") as base:
        monkeypatch.setenv("XDG_RUNTIME_DIR", base)
        yield Path(base) / "lora-workbench"
        warm_start.stop_hosts()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A 2-layer, 64-wide Llama with the bundled tokenizer, so training takes seconds on a CPU.

    Built here rather than shipped, so the tests depend on no file but the bundled model's tokenizer.
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from core.models.loading import load_tokenizer

    tokenizer = load_tokenizer("SmolLM2-135M-Instruct")
    config = LlamaConfig(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=len(tokenizer),
        max_position_embeddings=512,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    folder = tmp_path_factory.mktemp("tiny-llama")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


class TinyRuns(dict):
    """method -> a finished run of the tiny job with that method's matrix settings at learning rate 2e-2
    (high enough to change the tiny model's greedy answer), trained the first time a test asks for it.
    Shared by every test of the session, so tests only read a run (copy it to change it)."""

    def __init__(self, workspace, model_dir):
        super().__init__()
        self.workspace, self.model_dir = workspace, model_dir

    def spec(self, method: str):
        return tiny_spec(self.model_dir, method=method, train={"learning_rate": 2e-2}, **METHOD_MATRIX[method])

    def __missing__(self, method: str):
        self[method] = train_spec(self.workspace, self.spec(method))
        return self[method]


@pytest.fixture(scope="session")
def tiny_runs(tiny_model_dir, tmp_path_factory):
    """tiny_runs[method]: the session's shared tiny run of that method (see TinyRuns)."""
    runs = TinyRuns(tmp_path_factory.mktemp("tiny-runs"), tiny_model_dir)
    yield runs
    kill_leftover_trainers(runs.workspace)


@pytest.fixture
def workspace(tmp_path):
    ws = tmp_path / "ws"
    yield ws
    kill_leftover_trainers(ws)


@pytest.fixture(scope="session")
def quickstart_run(tmp_path_factory):
    """`python app.py train presets/quickstart.yaml` on the bundled model, once per session (about two
    minutes on 2 cores): the CLI acceptance test checks it and the browser chat test talks to it.

    Yields result (the finished command), workspace and run (its folder). Shared: a test that would
    change the run copies it first."""
    from core.paths import PROJECT_ROOT

    workspace = tmp_path_factory.mktemp("quickstart-ws")
    try:
        result = subprocess.run([sys.executable, "app.py", "train", "presets/quickstart.yaml", "--workspace",
                                 str(workspace)], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=900)
        assert result.returncode == 0, result.stderr[-3000:]
        yield SimpleNamespace(result=result, workspace=workspace, run=Path(result.stdout.strip().splitlines()[-1]))
    finally:
        kill_leftover_trainers(workspace)  # a timed-out command leaves its detached trainer running
