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
    # Within a time limit: the template is the model's code, and a loop in it must not hang a trainer or a page.
    from core.data.template_limit import render_chat

    return render_chat(tokenizer, messages, tokenize=False, add_generation_prompt=add_generation_prompt)


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


def sample_char_spans(tokenizer, sample: dict, train_on_prompt: bool = False) -> tuple[str, list[tuple[int, int]]]:
    """The text a sample becomes and its trained character spans, for either sample shape."""
    if "messages" in sample:
        return trained_char_spans(tokenizer, sample["messages"], train_on_prompt)
    # Raw text: no template; the end-of-sequence token closes it so the model learns where a document stops.
    text, spans = "", []
    segments = list(sample["segments"])
    segments[-1] = (segments[-1][0] + (tokenizer.eos_token or ""), segments[-1][1])
    for piece, trained in segments:
        if trained or train_on_prompt:
            spans.append((len(text), len(text) + len(piece)))
        text += piece
    return text, spans


def encode_full(tokenizer, sample: dict, train_on_prompt: bool = False) -> dict:
    """{"input_ids", "labels", "offsets", "text"} of the whole sample, before any cut to max_length.

    The trainer's rows and the Data tab's coloured preview both come from here, so what the
    preview shows as trained is exactly what the loss sees."""
    text, spans = sample_char_spans(tokenizer, sample, train_on_prompt)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = enc["input_ids"], enc["offset_mapping"]
    labels = []
    for token_id, (start, end) in zip(ids, offsets):
        inside = any(s <= start < e or (start == end and s < start <= e) for s, e in spans)
        labels.append(token_id if inside else -100)
    return {"input_ids": ids, "labels": labels, "offsets": offsets, "text": text}


def encode_sample(tokenizer, sample: dict, max_length: int, train_on_prompt: bool = False) -> dict:
    """Return {"input_ids", "labels"} cut to max_length; labels are -100 outside trained spans."""
    full = encode_full(tokenizer, sample, train_on_prompt)
    return {"input_ids": full["input_ids"][:max_length], "labels": full["labels"][:max_length]}


def encode_conversation(tokenizer, messages: list[dict], max_length: int, train_on_prompt: bool = False) -> dict:
    return encode_sample(tokenizer, {"messages": messages}, max_length, train_on_prompt)


END_OF_TURN_TOKENS = ("<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|end|>", "</s>", "<|endoftext|>")


def end_token_ids(tokenizer) -> set[int]:
    """Ids that end a turn or a document for this tokenizer: its EOS and any known end-of-turn marker."""
    ids = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    vocab = tokenizer.get_vocab()
    return ids | {vocab[t] for t in END_OF_TURN_TOKENS if t in vocab}


def stops_trained(tokenizer, labels: list[int]) -> bool:
    """Whether some end-of-turn token is trained: without one the model never learns to stop."""
    ends = end_token_ids(tokenizer)
    return any(label in ends for label in labels if label != -100)


def encode_samples(tokenizer, samples: list[dict], max_length: int, train_on_prompt: bool = False) -> list[dict]:
    """Encode every sample, dropping those left with no trained token after the cut."""
    rows = [encode_sample(tokenizer, s, max_length, train_on_prompt) for s in samples]
    rows = [r for r in rows if any(label != -100 for label in r["labels"])]
    if not rows:
        raise ValueError(f"no sample keeps an answer token within max_length={max_length}; raise data.max_length")
    return rows

