"""Read dataset files into conversations: lists of {"role", "content"} messages.

Alpaca rows (instruction/input/output, optional system and history) and
messages-style rows (OpenAI "messages" or ShareGPT "conversations") both become
the same conversation shape, which is all the tokeniser needs to know.
"""
from __future__ import annotations

import json
from pathlib import Path

from core.data.registry import DatasetEntry, DatasetError

SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}


def read_rows(path: Path) -> list[dict]:
    """Read a .json array or a .jsonl file; errors name the file and line."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise DatasetError(f"{path}: not UTF-8 text (bad byte at offset {err.start})") from None
    if not text.strip():
        raise DatasetError(f"{path}: the file is empty")
    if path.suffix == ".jsonl":
        rows = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise DatasetError(f"{path} line {number}: invalid JSON ({err.msg})") from None
        return rows
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise DatasetError(f"{path} line {err.lineno}: invalid JSON ({err.msg})") from None
    if not isinstance(data, list):
        raise DatasetError(f"{path}: expected a JSON array of samples, got {type(data).__name__}")
    return data


def fill_placeholders(text: str, values: dict[str, str]) -> str:
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", value)
    return text


def alpaca_to_messages(row: dict, columns: dict) -> list[dict]:
    col = {"prompt": "instruction", "query": "input", "response": "output", "system": "system", "history": "history"}
    col.update(columns)
    prompt = str(row.get(col["prompt"]) or "")
    query = str(row.get(col["query"]) or "")
    response = row.get(col["response"])
    if not prompt.strip() and not query.strip():
        raise ValueError(f"'{col['prompt']}' is missing or empty")
    if response is None or not str(response).strip():
        raise ValueError(f"'{col['response']}' is missing or empty")
    messages = []
    if row.get(col["system"]):
        messages.append({"role": "system", "content": str(row[col["system"]])})
    for turn in row.get(col["history"]) or []:
        messages += [{"role": "user", "content": str(turn[0])}, {"role": "assistant", "content": str(turn[1])}]
    user = f"{prompt}\n{query}" if prompt and query else (prompt or query)
    messages += [{"role": "user", "content": user}, {"role": "assistant", "content": str(response)}]
    return messages


def chat_to_messages(row: dict, columns: dict) -> list[dict]:
    key = columns.get("messages") or ("messages" if "messages" in row else "conversations")
    turns = row.get(key)
    if not isinstance(turns, list) or not turns:
        raise ValueError(f"'{key}' is missing or empty")
    messages = []
    for turn in turns:
        role = turn.get("role", turn.get("from"))
        content = turn.get("content", turn.get("value"))
        if role not in SHAREGPT_ROLES:
            raise ValueError(f"unknown role {role!r}")
        messages.append({"role": SHAREGPT_ROLES[role], "content": str(content or "")})
    if messages[-1]["role"] != "assistant":
        raise ValueError("the conversation does not end with an assistant turn")
    return messages


def detect_format(row: dict) -> str:
    if "messages" in row or "conversations" in row:
        return "sharegpt"
    if "instruction" in row and "output" in row:
        return "alpaca"
    raise DatasetError(f"cannot tell the format from the keys {sorted(row)}; expected instruction/output or messages")


def load_conversations(entry: DatasetEntry, placeholders: dict[str, str]) -> list[list[dict]]:
    """Read a dataset into conversations, refusing it with every bad row's number when any is bad."""
    if entry.ranking:
        raise DatasetError(f"dataset '{entry.name}' holds preference pairs (ranking); supervised fine-tuning needs single answers")
    rows = read_rows(entry.path)
    if not rows:
        raise DatasetError(f"{entry.path}: holds no samples")
    formatting = entry.formatting if entry.formatting != "auto" else detect_format(rows[0])
    convert = alpaca_to_messages if formatting == "alpaca" else chat_to_messages
    conversations, problems = [], []
    for number, row in enumerate(rows, start=1):
        try:
            if not isinstance(row, dict):
                raise ValueError(f"expected an object, got {type(row).__name__}")
            messages = convert(row, entry.columns)
        except ValueError as err:
            problems.append(f"{entry.path} sample {number}: {err}")
            continue
        for message in messages:
            message["content"] = fill_placeholders(message["content"], placeholders)
        conversations.append(messages)
    if problems:
        shown = problems[:20] + ([f"... and {len(problems) - 20} more"] if len(problems) > 20 else [])
        raise DatasetError("\n".join(shown))
    return conversations
