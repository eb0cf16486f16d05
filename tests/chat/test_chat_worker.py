"""The chat worker: a separate process that streams answers from base and fine-tuned weights of one
loaded model, survives bad requests, reports its own death, and gives its memory back on unload."""
from __future__ import annotations

import os
import signal

import psutil
import pytest

from core.chat.client import ChatClient, ChatWorkerError
from core.chat.options import GenerationOptions

QUESTION = [{"role": "user", "content": "Who are you?"}]
GREEDY = {"temperature": 0, "max_new_tokens": 12, "repetition_penalty": 1.0}


@pytest.fixture(scope="module")
def lora_run(tiny_runs):
    return tiny_runs["lora"]  # trained at lr 2e-2, shared with the export tests


@pytest.fixture
def client(tmp_path):
    chat = ChatClient(tmp_path / "chat.log")
    yield chat
    chat.unload()


def answer(client, adapter, params=GREEDY):
    pieces = list(client.generate(QUESTION, params, adapter=adapter))
    done = pieces.pop()
    assert "".join(pieces) == done["text"], "the streamed pieces must add up to the answer"
    return done


def assert_greedy_path(model, tokenizer, answer_ids: list[int], tie: float = 1e-4):
    import torch

    from core.chat.prompt import encode_prompt

    prompt = encode_prompt(tokenizer, QUESTION)["input_ids"]
    ids = torch.cat([prompt, torch.tensor([answer_ids])], dim=1)
    with torch.inference_mode():
        logits = model(input_ids=ids).logits[0, prompt.shape[1] - 1:-1]
    chosen = logits.gather(1, torch.tensor(answer_ids)[:, None])[:, 0]
    gap = logits.max(dim=1).values - chosen
    scale = logits.abs().max().item()
    assert (gap <= tie * max(scale, 1.0)).all(), f"worker's tokens are not greedy here: gaps {gap.tolist()}"


def test_streams_base_and_tuned_answers_from_one_model(client, lora_run, tiny_model_dir):
    from core.models.adapter import load_run_model

    loaded = client.load(run=str(lora_run.path))
    assert loaded["has_adapter"] and loaded["pid"] != os.getpid()
    base, tuned = answer(client, adapter=False), answer(client, adapter=True)
    assert base["tokens"] > 0 and tuned["tokens"] > 0

    # Held against the same computation done here: adapter off is the base, on is base+adapter. A random
    # tiny model has near-ties (',' against '，'), which two processes may break differently, so each
    # token the worker chose must be the in-process model's best up to a tie, not the same string.
    model, tokenizer, _ = load_run_model(lora_run)
    assert_greedy_path(model, tokenizer, tuned["token_ids"])
    with model.disable_adapter():
        assert_greedy_path(model, tokenizer, base["token_ids"])
    assert base["text"] != tuned["text"], "training at lr 2e-2 must change the tiny model's greedy answer"


def test_same_seed_same_sample_and_other_seed_differs(client, lora_run):
    client.load(run=str(lora_run.path))
    sampled = {"temperature": 1.5, "top_k": 0, "top_p": 1.0, "max_new_tokens": 16, "repetition_penalty": 1.0}
    first = answer(client, True, {**sampled, "seed": 7})["text"]
    assert answer(client, True, {**sampled, "seed": 7})["text"] == first
    assert answer(client, True, {**sampled, "seed": 8})["text"] != first


def test_unload_ends_the_process_and_returns_its_memory(client, lora_run):
    loaded = client.load(run=str(lora_run.path))
    worker = psutil.Process(loaded["pid"])
    assert worker.memory_info().rss > 100 * 2**20  # torch + model: the memory unload must give back
    client.unload()
    assert not psutil.pid_exists(loaded["pid"]) or worker.status() == psutil.STATUS_ZOMBIE
    assert not client.alive()
    with pytest.raises(ChatWorkerError, match="no chat model"):
        list(client.generate(QUESTION, GREEDY))


def test_a_bad_request_is_an_error_and_the_worker_keeps_serving(client, lora_run, tmp_path):
    with pytest.raises(ChatWorkerError, match="no run at"):
        client.load(run=str(tmp_path / "missing-run"))
    assert client.alive()
    client.load(run=str(lora_run.path))
    assert answer(client, True)["tokens"] > 0


def test_a_crashed_worker_is_reported_and_a_new_one_loads(client, lora_run):
    loaded = client.load(run=str(lora_run.path))
    os.kill(loaded["pid"], signal.SIGKILL)
    with pytest.raises(ChatWorkerError, match="ended"):
        answer(client, True)
    client.load(run=str(lora_run.path))
    assert answer(client, True)["tokens"] > 0


def test_defaults_are_greedy_and_a_bad_option_is_named(client, tiny_model_dir):
    client.load(base=str(tiny_model_dir))
    # No params: the worker's defaults are GenerationOptions', greedy, so the seed cannot change the answer.
    first = answer(client, adapter=False, params={"seed": 1})
    assert answer(client, adapter=False, params={"seed": 2})["token_ids"] == first["token_ids"]
    assert first["tokens"] <= GenerationOptions().max_new_tokens
    with pytest.raises(ChatWorkerError, match=r"temperature: -1.0 is below the minimum 0.0"):
        answer(client, adapter=False, params={"temperature": -1})
    assert answer(client, adapter=False, params={"max_new_tokens": 3})["tokens"] <= 3  # and it keeps serving
