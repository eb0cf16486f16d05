"""Limits on what a dataset row may hold, and the launch-time fit of data to the job."""
from __future__ import annotations

import json

import pytest

from core.data import limits
from core.data.source import check_dataset


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_a_dataset_with_more_rows_than_the_cap_is_refused_whole(tmp_path, monkeypatch):
    monkeypatch.setattr(limits, "MAX_ROWS", 5)  # 10 million rows is too slow to build here; the rule is the same
    path = write(tmp_path / "d.jsonl", "".join(json.dumps({"text": f"row {n}"}) + "\n" for n in range(6)))
    assert check_dataset(path).fatal == f"{path}: holds more than 5 rows; split it, or pick a subset before training"
    monkeypatch.setattr(limits, "MAX_ROWS", 6)
    assert check_dataset(path).usable


def test_nan_in_a_parquet_column_is_a_number_not_a_json_error(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "d.parquet"
    pq.write_table(pa.table({"instruction": ["a", "b"], "output": ["x", "y"], "score": [0.5, float("nan")]}), path)
    assert check_dataset(str(path)).usable  # parquet holds floats natively; only JSON text has no NaN


def test_depth_is_measured_without_recursion():
    deep = current = {}
    for _ in range(5000):  # deeper than Python's recursion limit
        current["x"] = {}
        current = current["x"]
    assert limits.value_problem(deep).startswith("nested deeper than 64 levels (at x.x.x")


def test_a_row_just_under_the_size_cap_is_fine(tmp_path):
    text = "x" * (limits.MAX_ROW_BYTES - 100)
    path = write(tmp_path / "d.jsonl", json.dumps({"instruction": "a", "output": text}) + "\n")
    assert check_dataset(path).usable


def test_the_max_length_check_stops_at_the_first_sample_that_keeps_an_answer(tiny_model_dir):
    from transformers import AutoTokenizer

    from core.data.fit import max_length_problems

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    long = {"messages": [{"role": "user", "content": "word " * 200}, {"role": "assistant", "content": "ok"}]}
    short = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "ok"}]}
    seen = []

    def samples():
        for n, sample in enumerate([long, short, long]):
            seen.append(n)
            yield f"line {n + 1}", sample

    assert max_length_problems(samples(), tokenizer, 64, False) == []
    assert seen == [0, 1]  # the third sample was never encoded
    ((field, message),) = max_length_problems(iter([("line 1", long)]), tokenizer, 64, False)
    assert field == "data.max_length" and "raise data.max_length" in message


@pytest.mark.parametrize("split, count, ok", [(0.1, 10, True), (0.1, 4, False), (0.5, 2, True), (0.5, 1, False)])
def test_eval_split_leaves_samples_on_both_sides(split, count, ok):
    from core.data.fit import eval_split_problem

    assert (eval_split_problem(count, split) is None) == ok
