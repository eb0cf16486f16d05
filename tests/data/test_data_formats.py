"""Every supported file type and format reads into the samples the tokeniser expects."""
from __future__ import annotations

import json

import pytest

from core.data.arithmetic import SETS, file_name, problems, render
from core.data.registry import DatasetEntry, DatasetError, list_entries
from core.data.source import OpenDataset, load_entry_samples, load_samples, open_dataset
from core.data.uploads import parse_columns, save_mapping, store_upload
from core.paths import DATA_DIR


def samples_of(path, formatting="auto", **kw):
    return load_entry_samples(OpenDataset(DatasetEntry(name=path.name, path=path, formatting=formatting, **kw)), {})


def test_alpaca_with_system_history_and_tools(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text(json.dumps({"instruction": "Add", "input": "2 and 3", "output": "5", "system": "Be exact.",
                                "history": [["Hi", "Hello"]], "tools": "[calc]"}) + "\n")
    [sample] = samples_of(path)
    roles = [m["role"] for m in sample["messages"]]
    assert roles == ["system", "user", "assistant", "user", "assistant"]
    assert "Be exact." in sample["messages"][0]["content"] and "[calc]" in sample["messages"][0]["content"]
    assert sample["messages"][3]["content"] == "Add\n2 and 3"


def test_sharegpt_tool_turns_and_openai_typed_parts(tmp_path):
    share = tmp_path / "s.json"
    share.write_text(json.dumps([{"conversations": [
        {"from": "human", "value": "weather?"}, {"from": "function_call", "value": "{\"name\": \"w\"}"},
        {"from": "observation", "value": "sunny"}, {"from": "gpt", "value": "It is sunny."}], "tools": "[w]"}]))
    [sample] = samples_of(share)
    assert [m["role"] for m in sample["messages"]] == ["system", "user", "assistant", "tool", "assistant"]
    parts = tmp_path / "o.jsonl"
    parts.write_text(json.dumps({"messages": [
        {"role": "user", "content": [{"type": "text", "value": "hi "}, {"type": "text", "text": "there"}]},
        {"role": "assistant", "content": [{"type": "text", "value": "hello"}]}]}) + "\n")
    assert samples_of(parts) == [{"messages": [{"role": "user", "content": "hi there"},
                                               {"role": "assistant", "content": "hello"}]}]


def test_custom_sharegpt_role_tags_from_the_registry(tmp_path):
    path = tmp_path / "t.json"
    path.write_text(json.dumps([{"chat": [{"who": "me", "say": "q"}, {"who": "bot", "say": "a"}]}]))
    tags = {"role_tag": "who", "content_tag": "say", "user_tag": "me", "assistant_tag": "bot"}
    [sample] = samples_of(path, "sharegpt", columns={"messages": "chat"}, tags=tags)
    assert sample["messages"] == [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]


def test_prompt_completion_and_plain_text(tmp_path):
    pc = tmp_path / "pc.jsonl"
    pc.write_text(json.dumps({"prompt": "The sky is", "completion": " blue."}) + "\n")
    assert samples_of(pc) == [{"segments": [("The sky is", False), (" blue.", True)]}]
    txt = tmp_path / "book.txt"
    txt.write_text("First document.\n\nSecond document.\n", encoding="utf-8")
    assert samples_of(txt) == [{"segments": [("First document.", True)]}, {"segments": [("Second document.", True)]}]


def test_csv_and_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    csv_path = tmp_path / "d.csv"
    csv_path.write_text('instruction,input,output\nSay hi,,"hi, friend"\n', encoding="utf-8")
    assert samples_of(csv_path)[0]["messages"][-1]["content"] == "hi, friend"
    pq_path = tmp_path / "d.parquet"
    pq.write_table(pa.table({"prompt": ["2+2="], "completion": ["4"]}), pq_path)
    assert samples_of(pq_path) == [{"segments": [("2+2=", False), ("4", True)]}]


def test_undetectable_keys_need_a_mapping_and_the_mapping_works(tmp_path):
    path = tmp_path / "qa.jsonl"
    path.write_text(json.dumps({"question": "Capital of France?", "answer": "Paris"}) + "\n")
    with pytest.raises(DatasetError, match="cannot tell the format"):
        open_dataset(str(path))
    columns = parse_columns("prompt=question, response=answer")
    registry = save_mapping(tmp_path / "ws", "qa", path, "alpaca", columns)
    [sample] = load_samples("qa", str(registry), {})
    assert sample["messages"][-1] == {"role": "assistant", "content": "Paris"}


def test_upload_lands_in_the_workspace_under_a_fresh_name(tmp_path):
    src = tmp_path / "my data.jsonl"
    src.write_text('{"text": "x"}\n')
    first, second = store_upload(src, tmp_path / "ws"), store_upload(src, tmp_path / "ws")
    assert first.parent == second.parent == tmp_path / "ws" / "data" and first != second
    with pytest.raises(DatasetError, match="unsupported file type"):
        store_upload(tmp_path / "x.exe", tmp_path / "ws")


def test_mixing_datasets_concatenates_them():
    both = load_samples("arithmetic_2digit_test, arithmetic_4digit_test", "", {})
    assert len(both) == 400


def test_bundled_registry_entries_are_all_available():
    assert all(reason is None for _, reason in list_entries())


def test_arithmetic_files_match_the_generator_and_splits_do_not_overlap():
    for name in SETS:
        made = problems(name)
        for split, rows in made.items():
            assert (DATA_DIR / file_name(name, split)).read_text(encoding="utf-8") == render(rows)
        train_q = {r["instruction"] for r in made["train"]}
        assert not train_q & {r["instruction"] for r in made["test"]}
        for row in made["test"]:
            question, answer = row["output"].split(" = ")
            assert eval(question.replace("×", "*")) == int(answer)  # noqa: S307 - our own generated digits


def test_general_instructions_are_bilingual_and_at_least_100():
    import re

    rows = json.loads((DATA_DIR / "general_instructions.json").read_text(encoding="utf-8"))
    chinese = [r for r in rows if re.search(r"[\u4e00-\u9fff]", r["instruction"])]
    assert len(rows) >= 100 and len(chinese) >= 40 and len(rows) - len(chinese) >= 50
    assert len(load_samples("general_instructions", "", {})) == len(rows)
