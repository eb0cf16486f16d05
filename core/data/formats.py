"""Turn dataset rows into samples the tokeniser understands.

A sample is one of two shapes:
- {"messages": [{"role", "content"}, ...]}: a conversation, rendered through the
  model's chat template; the assistant turns are trained.
- {"segments": [(text, trained), ...]}: raw text with no template, for
  continued pre-training (all trained) and prompt/completion pairs (completion trained).

Formats: alpaca (instruction/input/output, system, history), sharegpt
(conversations of from/value, with function_call/observation turns and a tools
column), openai (messages of role/content, content may be a list of typed
parts), prompt_completion, and text. `detect_format` picks one from a row's keys.
"""
from __future__ import annotations

import json

from core.data.registry import DatasetEntry, DatasetError

FORMATS = ("auto", "alpaca", "sharegpt", "openai", "prompt_completion", "text")

# ShareGPT role names (LLaMA-Factory's defaults) mapped to chat-template roles.
DEFAULT_TAGS = {"role_tag": "from", "content_tag": "value", "user_tag": "human", "assistant_tag": "gpt",
                "observation_tag": "observation", "function_tag": "function_call", "system_tag": "system"}
ROLE_ALIASES = {"user": "user", "human": "user", "assistant": "assistant", "gpt": "assistant", "system": "system",
                "tool": "tool", "observation": "tool", "function": "tool", "function_call": "assistant",
                "model": "assistant", "bot": "assistant"}


def detect_format(row: dict, text_file: bool = False) -> str | None:
    """The format a row's keys suggest, or None when they do not say."""
    if text_file:
        return "text"
    if "chosen" in row and "rejected" in row:
        return "ranking"
    for key in ("messages", "conversations"):
        turns = row.get(key)
        if isinstance(turns, list) and turns and isinstance(turns[0], dict):
            return "sharegpt" if "from" in turns[0] else "openai"
    if "instruction" in row and "output" in row:
        return "alpaca"
    if "prompt" in row and "completion" in row:
        return "prompt_completion"
    if "text" in row:
        return "text"
    return None


def resolve_format(entry: DatasetEntry, first_row: dict, text_file: bool) -> str:
    """The format to read an entry with; LLaMA-Factory's plain-text entries are alpaca with only a prompt column."""
    if text_file:
        return "text"
    if entry.formatting == "alpaca" and entry.columns.get("prompt") and "response" not in entry.columns \
            and "output" not in first_row and entry.columns["prompt"] in first_row:
        return "text"
    if entry.formatting != "auto":
        return entry.formatting
    found = detect_format(first_row)
    if found is None:
        raise DatasetError(f"cannot tell the format of {entry.name} from its keys {sorted(first_row)[:10]}; "
                           "choose the format and map the columns (Data tab) or add a registry entry")
    return found


def _text(value, what: str) -> str:
    """Message content as text: a string, or a list of typed parts whose text parts are joined."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if isinstance(value, list):
        pieces = []
        for part in value:
            if isinstance(part, str):
                pieces.append(part)
            elif isinstance(part, dict) and part.get("type", "text") == "text":
                pieces.append(str(part.get("text", part.get("value", ""))))
            else:
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                raise ValueError(f"{what} has a '{kind}' part; only text parts are supported")
        return "".join(pieces)
    if isinstance(value, (int, float)):
        return str(value)
    raise ValueError(f"{what} must be text, got {type(value).__name__}")


def check_role_order(messages: list[dict]) -> None:
    """System first (optional), then a user turn; assistant answers a user or a tool; a tool answers an
    assistant's call; the conversation ends with an assistant turn, which is what gets trained."""
    if not messages:
        raise ValueError("the conversation is empty")
    previous = None
    for number, message in enumerate(messages, start=1):
        role = message["role"]
        allowed = {None: {"system", "user"}, "system": {"user"}, "user": {"assistant"},
                   "assistant": {"user", "tool"}, "tool": {"assistant", "tool"}}[previous]
        if role not in allowed:
            after = f"after a '{previous}' turn" if previous else "as the first turn"
            raise ValueError(f"wrong role order: turn {number} is '{role}' {after} (expected {' or '.join(sorted(allowed))})")
        if not message["content"].strip() and role in ("user", "assistant"):
            raise ValueError(f"turn {number} ('{role}') is empty")
        previous = role
    if previous != "assistant":
        raise ValueError(f"the conversation ends with a '{previous}' turn; it must end with an assistant answer")


def _with_tools(messages: list[dict], tools) -> list[dict]:
    """Tool descriptions go into the system prompt as text, so every chat template shows them the same way."""
    if not tools:
        return messages
    described = tools if isinstance(tools, str) else json.dumps(tools, ensure_ascii=False)
    note = f"You can call these tools:\n{described}"
    if messages and messages[0]["role"] == "system":
        return [{"role": "system", "content": messages[0]["content"] + "\n\n" + note}, *messages[1:]]
    return [{"role": "system", "content": note}, *messages]


def alpaca_sample(row: dict, columns: dict) -> dict:
    col = {"prompt": "instruction", "query": "input", "response": "output", "system": "system", "history": "history",
           "tools": "tools"}
    col.update(columns)
    prompt = _text(row.get(col["prompt"]), f"'{col['prompt']}'")
    query = _text(row.get(col["query"]), f"'{col['query']}'")
    response = _text(row.get(col["response"]), f"'{col['response']}'")
    if not prompt.strip() and not query.strip():
        raise ValueError(f"missing or empty field '{col['prompt']}'")
    if not response.strip():
        raise ValueError(f"missing or empty field '{col['response']}'")
    messages = []
    system = _text(row.get(col["system"]), f"'{col['system']}'")
    if system.strip():
        messages.append({"role": "system", "content": system})
    history = row.get(col["history"]) or []
    if not isinstance(history, list):
        raise ValueError(f"'{col['history']}' must be a list of [prompt, answer] pairs")
    for number, turn in enumerate(history, start=1):
        if not isinstance(turn, (list, tuple)) or len(turn) != 2:
            raise ValueError(f"'{col['history']}' item {number} must be a [prompt, answer] pair")
        messages += [{"role": "user", "content": _text(turn[0], "history prompt")},
                     {"role": "assistant", "content": _text(turn[1], "history answer")}]
    user = f"{prompt}\n{query}" if prompt and query else (prompt or query)
    messages += [{"role": "user", "content": user}, {"role": "assistant", "content": response}]
    check_role_order(messages)
    return {"messages": _with_tools(messages, row.get(col["tools"]))}


def chat_sample(row: dict, columns: dict, tags: dict) -> dict:
    key = columns.get("messages") or ("messages" if "messages" in row else "conversations")
    turns = row.get(key)
    if not isinstance(turns, list) or not turns:
        raise ValueError(f"missing or empty field '{key}'")
    tag = {**DEFAULT_TAGS, **tags}
    # Custom ShareGPT role names from the registry's tags, plus the common names.
    roles = {**ROLE_ALIASES, tag["user_tag"]: "user", tag["assistant_tag"]: "assistant",
             tag["observation_tag"]: "tool", tag["function_tag"]: "assistant", tag["system_tag"]: "system"}
    messages = []
    for number, turn in enumerate(turns, start=1):
        if not isinstance(turn, dict):
            raise ValueError(f"turn {number} must be an object, got {type(turn).__name__}")
        role = turn.get("role", turn.get(tag["role_tag"]))
        content = turn.get("content", turn.get(tag["content_tag"]))
        if content is None and turn.get("tool_calls"):  # OpenAI's assistant tool call
            content = json.dumps(turn["tool_calls"], ensure_ascii=False)
        if role not in roles:
            raise ValueError(f"turn {number} has unknown role {role!r}")
        messages.append({"role": roles[role], "content": _text(content, f"turn {number}")})
    system = row.get(columns.get("system", "system"))
    if isinstance(system, str) and system.strip() and messages[0]["role"] != "system":
        messages.insert(0, {"role": "system", "content": system})
    check_role_order(messages)
    return {"messages": _with_tools(messages, row.get(columns.get("tools", "tools")))}


def prompt_completion_sample(row: dict, columns: dict) -> dict:
    prompt_key, completion_key = columns.get("prompt", "prompt"), columns.get("completion", "completion")
    prompt, completion = row.get(prompt_key), row.get(completion_key)
    if isinstance(prompt, list) and isinstance(completion, list):  # conversational prompt/completion
        return chat_sample({"messages": prompt + completion}, {}, {})
    prompt, completion = _text(prompt, f"'{prompt_key}'"), _text(completion, f"'{completion_key}'")
    if not completion.strip():
        raise ValueError(f"missing or empty field '{completion_key}'")
    return {"segments": [(prompt, False), (completion, True)]}


def text_sample(row: dict, columns: dict) -> dict:
    key = columns.get("prompt") or columns.get("text") or "text"
    text = _text(row.get(key), f"'{key}'")
    if not text.strip():
        raise ValueError(f"missing or empty field '{key}'")
    return {"segments": [(text, True)]}


def row_to_sample(row: dict, formatting: str, columns: dict, tags: dict) -> dict:
    """One row as a sample; ValueError says what is wrong with it."""
    if not isinstance(row, dict):
        raise ValueError(f"expected an object, got {type(row).__name__}")
    if formatting == "alpaca":
        return alpaca_sample(row, columns)
    if formatting in ("sharegpt", "openai"):
        return chat_sample(row, columns, tags)
    if formatting == "prompt_completion":
        return prompt_completion_sample(row, columns)
    if formatting == "text":
        return text_sample(row, columns)
    raise ValueError(f"unknown format {formatting!r} (known: {', '.join(FORMATS)})")


def fill_placeholders(sample: dict, values: dict[str, str]) -> dict:
    """Replace {{name}} and {{author}} (identity-style datasets) in every piece of text."""
    def fill(text: str) -> str:
        for key, value in values.items():
            text = text.replace("{{" + key + "}}", value)
        return text

    if "messages" in sample:
        return {"messages": [{**m, "content": fill(m["content"])} for m in sample["messages"]]}
    return {"segments": [(fill(text), trained) for text, trained in sample["segments"]]}
