"""Fixtures shared by the core tests: a tiny Llama built in the session, and a fresh workspace."""
from __future__ import annotations

import os

# Nothing in the test suite may reach a network; trainer subprocesses inherit this too.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest  # noqa: E402

from tests.helpers import kill_leftover_trainers  # noqa: E402


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


@pytest.fixture
def workspace(tmp_path):
    ws = tmp_path / "ws"
    yield ws
    kill_leftover_trainers(ws)
