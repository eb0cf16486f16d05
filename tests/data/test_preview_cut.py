"""A long row is cut in the Data tab's preview, with a note; the check and the statistics still read all of it."""
from __future__ import annotations

import json

from core.data.preview import PREVIEW_TOKENS, length_stats, preview_page
from core.data.source import check_dataset, open_dataset
from core.models.loading import load_tokenizer
from webui.data_tab import sample_html


def test_a_long_row_is_drawn_cut_with_a_note(tmp_path):
    data = tmp_path / "long.jsonl"
    long_input = "lorem ipsum dolor sit amet " * 8000  # about 216 KB, some 40,000 tokens
    data.write_text(json.dumps({"instruction": "Summarise.", "input": long_input, "output": "ok"}) + "\n"
                    + json.dumps({"instruction": "hi", "output": "hello"}) + "\n")
    assert check_dataset(str(data)).usable  # the check reads the whole row
    tokenizer = load_tokenizer("SmolLM2-135M-Instruct")
    opened = open_dataset(str(data))
    long, short = preview_page(opened, tokenizer, 0, 2, 512)
    assert len(long.tokens) == PREVIEW_TOKENS and long.num_tokens > 30000
    assert ("long", {"shown": PREVIEW_TOKENS, "tokens": long.num_tokens}) in long.warnings
    assert not [code for code, _ in short.warnings if code == "long"] and len(short.tokens) == short.num_tokens
    page = sample_html(long, "en")
    assert len(page) < 150_000 < len(long_input)  # drawn cut, not the whole row
    assert f"only its first {PREVIEW_TOKENS} of {long.num_tokens} tokens are shown" in page
    assert "只显示前" in sample_html(long, "zh")
    assert length_stats(opened, tokenizer, 512).lengths[0] == long.num_tokens  # statistics count every token
