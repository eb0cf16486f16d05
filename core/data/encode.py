"""Turn a conversation into token ids and training labels.

Labels are -100 (ignored by the loss) everywhere except the assistant's turns,
including each turn's end-of-turn token so the model learns to stop. We find
the assistant spans by rendering the chat template on growing prefixes of the
conversation: the text an assistant message adds is exactly its span. This
works for any template whose renders of a prefix are a prefix of the whole,
which holds for the common ChatML, Llama, Qwen and Gemma templates, and needs
no {% generation %} markers in the template. The preview draws the same labels.
"""
from __future__ import annotations

# Used for base models that ship without a chat template.
FALLBACK_CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def ensure_chat_template(tokenizer) -> None:
    if not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = FALLBACK_CHAT_TEMPLATE
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token


def _render(tokenizer, messages, add_generation_prompt=False) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)


def trained_char_spans(tokenizer, messages: list[dict], train_on_prompt: bool = False) -> tuple[str, list[tuple[int, int]]]:
    """Render the conversation and return it with the character spans that the loss sees."""
    text = _render(tokenizer, messages)
    if train_on_prompt:
        return text, [(0, len(text))]
    spans = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before = _render(tokenizer, messages[:i], add_generation_prompt=True) if i else ""
        through = _render(tokenizer, messages[: i + 1])
        if not text.startswith(through) or not through.startswith(before):
            raise ValueError(
                "the model's chat template renders a conversation differently from its prefixes, "
                "so assistant turns cannot be located; enable 'train on prompt' or use another template"
            )
        spans.append((len(before), len(through)))
    return text, spans


def encode_conversation(tokenizer, messages: list[dict], max_length: int, train_on_prompt: bool = False) -> dict:
    """Return {"input_ids", "labels"} cut to max_length; labels are -100 outside trained spans."""
    text, spans = trained_char_spans(tokenizer, messages, train_on_prompt)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = enc["input_ids"], enc["offset_mapping"]
    labels = []
    for token_id, (start, end) in zip(ids, offsets):
        inside = any(s <= start < e or (start == end and s < start <= e) for s, e in spans)
        labels.append(token_id if inside else -100)
    return {"input_ids": ids[:max_length], "labels": labels[:max_length]}


def encode_dataset(tokenizer, conversations: list[list[dict]], max_length: int, train_on_prompt: bool = False):
    """Encode every conversation into a datasets.Dataset of input_ids and labels."""
    from datasets import Dataset

    rows = [encode_conversation(tokenizer, c, max_length, train_on_prompt) for c in conversations]
    rows = [r for r in rows if any(label != -100 for label in r["labels"])]
    if not rows:
        raise ValueError(f"no sample keeps an answer token within max_length={max_length}; raise data.max_length")
    return Dataset.from_list(rows)
