"""Every answer is bounded, and says which bound it met: the conversation's length in characters and tokens
(refused before the model reads it), the model's context, the answer's time limit, Stop generation mid-answer,
and a chat template that renders for too long. The worker keeps serving after each."""
from __future__ import annotations

import threading

import pytest

from core.chat.client import ChatClient, ChatWorkerError
from tests.data.test_template_limit import ENDLESS, model_with_template

SAMPLED = {"temperature": 1.5, "top_k": 0, "top_p": 1.0, "repetition_penalty": 1.0}  # rarely picks end-of-turn


@pytest.fixture(scope="module")
def client(tmp_path_factory, tiny_model_dir):
    chat = ChatClient(tmp_path_factory.mktemp("chat") / "chat.log")  # one worker for the tests that share it
    chat.load(base=str(tiny_model_dir))
    yield chat
    chat.unload()


def ask(client, text: str, **params) -> dict:
    return list(client.generate([{"role": "user", "content": text}], params, adapter=False))[-1]


def test_long_conversations_are_refused_naming_the_limit(client):
    with pytest.raises(ChatWorkerError, match=r"PromptTooLong: the conversation is 40,000 characters, more than "
                                              r"generation.max_prompt_chars \(32,000\)"):
        ask(client, "x" * 40000)
    with pytest.raises(ChatWorkerError, match=r"more than generation.max_prompt_tokens \(16\)"):
        ask(client, "a fairly ordinary question that takes more than sixteen tokens once the template wraps it",
            max_prompt_tokens=16)
    with pytest.raises(ChatWorkerError, match="this model reads at most 512"):  # the tiny model's context
        ask(client, "word " * 600)
    with pytest.raises(ChatWorkerError, match="time_limit_s: 0.0 is below the minimum 1.0"):
        ask(client, "hi", time_limit_s=0)
    assert ask(client, "hi", max_new_tokens=3)["tokens"] <= 3  # and it keeps serving


def test_an_answer_stops_at_its_time_limit_and_says_so(client):
    done = ask(client, "Tell me a long story.", max_new_tokens=4096, time_limit_s=1, **SAMPLED)
    assert done["stopped"] == "time_limit" and done["time_limit_s"] == 1.0
    assert 1.0 <= done["seconds"] < 5 and 0 < done["tokens"] < 4096


def test_stop_generation_ends_the_answer_mid_way(client):
    pieces, done = [], {}

    def read():
        for piece in client.generate([{"role": "user", "content": "Tell me a long story."}],
                                     {"max_new_tokens": 4096, "time_limit_s": 300, **SAMPLED}, adapter=False):
            if isinstance(piece, str):
                pieces.append(piece)
            else:
                done.update(piece)

    reader = threading.Thread(target=read)
    reader.start()
    while not pieces and reader.is_alive():
        reader.join(timeout=0.05)
    assert client.stop() is True and client.stop_asked.is_set()
    reader.join(timeout=60)
    assert not reader.is_alive() and done["stopped"] == "stop" and done["tokens"] < 4096 and done["seconds"] < 60
    assert client.stop() is False  # nothing is being generated now
    client.new_turn()
    assert not client.stop_asked.is_set()
    assert ask(client, "hi", max_new_tokens=2)["stopped"] is None  # an earlier Stop does not end a new answer


def test_a_template_that_loops_is_stopped_in_chat(tmp_path, tiny_model_dir):
    client = ChatClient(tmp_path / "loop.log")
    try:
        client.load(base=str(model_with_template(tmp_path, tiny_model_dir, ENDLESS)))
        with pytest.raises(ChatWorkerError, match="TemplateTimeout: the model's chat template did not finish rendering"):
            ask(client, "hi")
        assert client.alive()
    finally:
        client.unload()
