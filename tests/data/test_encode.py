"""Tokenisation with the label mask, and reading dataset files into conversations."""
from __future__ import annotations

import json
import re

import pytest

from core.data.encode import encode_conversation
from core.data.registry import DatasetEntry, DatasetError, find_dataset
from core.data.source import OpenDataset, load_entry_samples
from core.paths import DATA_DIR


def load_conversations(entry, placeholders):
    return [s["messages"] for s in load_entry_samples(OpenDataset(entry), placeholders)]


@pytest.fixture(scope="module")
def tokenizer():
    from core.models.loading import load_tokenizer

    return load_tokenizer("SmolLM2-135M-Instruct")


def trained_text(tokenizer, encoded) -> str:
    """The text of exactly the tokens the loss sees, in order."""
    ids = [label for label in encoded["labels"] if label != -100]
    return tokenizer.decode(ids)


def assert_labels_are_ids_or_ignored(encoded):
    assert len(encoded["labels"]) == len(encoded["input_ids"])
    for token, label in zip(encoded["input_ids"], encoded["labels"]):
        assert label in (-100, token)


def test_only_the_answer_and_its_end_of_turn_are_trained(tokenizer):
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Who are you?"},
                {"role": "assistant", "content": "I am Ferret."}]
    encoded = encode_conversation(tokenizer, messages, max_length=512)
    assert_labels_are_ids_or_ignored(encoded)
    # The model must learn to stop, so <|im_end|> after the answer is trained; system and user text are not.
    assert trained_text(tokenizer, encoded) == "I am Ferret.<|im_end|>\n"
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    trained_positions = [i for i, label in enumerate(encoded["labels"]) if label != -100]
    assert end in [encoded["input_ids"][i] for i in trained_positions]
    # Everything before the answer (system, user, the assistant header) is ignored: one contiguous tail is trained.
    assert trained_positions == list(range(trained_positions[0], len(encoded["labels"])))


def test_multi_turn_trains_both_answers_not_the_user_between(tokenizer):
    messages = [{"role": "user", "content": "Hi there"}, {"role": "assistant", "content": "Hello!"},
                {"role": "user", "content": "What is two plus two?"}, {"role": "assistant", "content": "Four."}]
    encoded = encode_conversation(tokenizer, messages, max_length=512)
    assert_labels_are_ids_or_ignored(encoded)
    assert trained_text(tokenizer, encoded) == "Hello!<|im_end|>\nFour.<|im_end|>\n"


def test_train_on_prompt_trains_every_token(tokenizer):
    messages = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]
    encoded = encode_conversation(tokenizer, messages, max_length=512, train_on_prompt=True)
    assert encoded["labels"] == encoded["input_ids"]


def test_max_length_cuts_ids_and_labels_together(tokenizer):
    messages = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello! " * 20}]
    full = encode_conversation(tokenizer, messages, max_length=10_000)
    cut = encode_conversation(tokenizer, messages, max_length=30)
    assert len(full["input_ids"]) > 30
    assert cut["input_ids"] == full["input_ids"][:30] and cut["labels"] == full["labels"][:30]


# --- dataset files -----------------------------------------------------------------------------

def write_json(path, rows):
    path.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    return path


def alpaca_entry(path, **kw):
    return DatasetEntry(name=path.stem, path=path, formatting="alpaca", **kw)


def test_alpaca_rows_become_conversations_with_placeholders_filled(tmp_path):
    path = write_json(tmp_path / "a.json", [
        {"instruction": "Who made you?", "input": "", "output": "{{author}} made me, {{name}}."},
        {"instruction": "Translate", "input": "chat", "output": "cat", "system": "You are {{name}}.",
         "history": [["Hi", "Hello"]]},
    ])
    first, second = load_conversations(alpaca_entry(path), {"name": "Ferret", "author": "Lab"})
    assert first == [{"role": "user", "content": "Who made you?"},
                     {"role": "assistant", "content": "Lab made me, Ferret."}]
    assert second == [{"role": "system", "content": "You are Ferret."},
                      {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"},
                      {"role": "user", "content": "Translate\nchat"}, {"role": "assistant", "content": "cat"}]


def test_empty_output_names_the_sample_number(tmp_path):
    path = write_json(tmp_path / "a.json", [
        {"instruction": "ok", "output": "fine"},
        {"instruction": "no answer", "output": ""},
        {"instruction": "ok", "output": "fine"},
        {"instruction": "", "output": "an answer to nothing"},
    ])
    with pytest.raises(DatasetError) as caught:
        load_conversations(alpaca_entry(path), {})
    # Every bad row is listed at once, each by its number, so the user fixes the file in one pass.
    assert "sample 2 (line 1)" in str(caught.value) and "'output'" in str(caught.value)
    assert "sample 4 (line 1)" in str(caught.value) and "sample 1" not in str(caught.value)


def test_ranking_dataset_is_refused(tmp_path):
    path = write_json(tmp_path / "prefs.json", [{"instruction": "q", "output": ["good", "bad"]}])
    with pytest.raises(DatasetError, match="ranking"):
        load_conversations(alpaca_entry(path, ranking=True), {})


def test_invalid_jsonl_line_is_named(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"instruction": "a", "output": "b"}\n\n{"instruction": "c", "output": "d"}\n{not json}\n')
    with pytest.raises(DatasetError, match=r"line 4: invalid JSON"):
        load_conversations(find_dataset(str(path)), {})


def test_empty_file_is_refused(tmp_path):
    path = tmp_path / "empty.json"
    path.write_text("  \n")
    with pytest.raises(DatasetError, match="empty"):
        load_conversations(find_dataset(str(path)), {})


def test_messages_file_is_detected_by_its_keys(tmp_path):
    path = tmp_path / "chat.jsonl"
    path.write_text(json.dumps({"conversations": [{"from": "human", "value": "Hi {{name}}"},
                                                  {"from": "gpt", "value": "Hello"}]}) + "\n")
    assert load_conversations(find_dataset(str(path)), {"name": "Ferret"}) == [
        [{"role": "user", "content": "Hi Ferret"}, {"role": "assistant", "content": "Hello"}]]


def test_unknown_dataset_name_lists_the_known_ones():
    with pytest.raises(DatasetError, match="identity"):
        find_dataset("no-such-dataset")


# --- the bundled identity dataset ----------------------------------------------------------------

CJK = re.compile(r"[\u4e00-\u9fff]")


def test_identity_dataset_is_bilingual_and_uses_the_name():
    rows = json.loads((DATA_DIR / "identity.json").read_text(encoding="utf-8"))
    texts = [" ".join(str(row.get(k, "")) for k in ("instruction", "input", "output")) for row in rows]
    chinese = [t for t in texts if CJK.search(t)]
    assert len(texts) - len(chinese) >= 40
    assert len(chinese) >= 20
    assert all("{{name}}" in t for t in texts), [t for t in texts if "{{name}}" not in t][:3]
    # The registry entry must read it cleanly, every row included.
    assert len(load_conversations(find_dataset("identity"), {"name": "N", "author": "A"})) == len(rows)
