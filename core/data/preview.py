"""What the model will be trained on: per-token previews and token-length statistics.

Both come from `encode_full`, the function the trainer's rows come from, so a
token shown as trained is a token whose label the loss sees.
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from core.data.encode import encode_full, stops_trained
from core.data.formats import fill_placeholders
from core.data.source import OpenDataset

STATS_LIMIT = 5000  # samples tokenised for the histogram; more would keep a big file's preview waiting
# Tokens drawn per sample. Each becomes a coloured span in the page, so a 6 MB row would otherwise send tens of
# megabytes of HTML; the check and the length statistics still read every token.
PREVIEW_TOKENS = 2048


@dataclass
class SamplePreview:
    index: int  # 0-based position in the dataset
    where: str
    problem: str | None = None
    tokens: list[tuple[str, bool, bool]] = field(default_factory=list)  # (text, trained, cut off by max_length)
    labels: list[int] = field(default_factory=list)  # within max_length, exactly as the trainer's row
    num_tokens: int = 0
    num_trained: int = 0
    # (code, values): "cut" {tokens, dropped}, "nothing_trained", "stop_not_trained", "long" {shown, tokens};
    # the UI words them
    warnings: list[tuple[str, dict]] = field(default_factory=list)


def token_pieces(full: dict) -> list[str]:
    """Each token's text from the offsets, so the pieces join back into the rendered text."""
    text, pieces, previous = full["text"], [], 0
    for _start, end in full["offsets"]:
        pieces.append(text[previous:end] if end > previous else "")
        previous = max(previous, end)
    return pieces


def preview_sample(tokenizer, sample: dict, max_length: int, train_on_prompt: bool = False,
                   show_tokens: int = PREVIEW_TOKENS) -> SamplePreview:
    """The sample's tokens as the trainer sees them; only the first `show_tokens` are kept for drawing."""
    full = encode_full(tokenizer, sample, train_on_prompt)
    labels = full["labels"]
    kept = labels[:max_length]
    out = SamplePreview(index=0, where="")
    shown = zip(token_pieces(full)[:show_tokens], labels[:show_tokens])
    out.tokens = [(piece, label != -100, i >= max_length) for i, (piece, label) in enumerate(shown)]
    out.labels = kept
    out.num_tokens = len(labels)
    out.num_trained = sum(label != -100 for label in kept)
    if out.num_tokens > max_length:
        out.warnings.append(("cut", {"tokens": out.num_tokens, "dropped": out.num_tokens - max_length}))
    if out.num_tokens > len(out.tokens):
        out.warnings.append(("long", {"shown": len(out.tokens), "tokens": out.num_tokens}))
    if out.num_trained == 0:
        out.warnings.append(("nothing_trained", {}))
    elif not stops_trained(tokenizer, kept):
        out.warnings.append(("stop_not_trained", {}))
    return out


def preview_page(data: OpenDataset, tokenizer, start: int, count: int, max_length: int, train_on_prompt: bool = False,
                 placeholders: dict[str, str] | None = None) -> list[SamplePreview]:
    """Previews of samples start..start+count; reads only those rows."""
    out = []
    for offset, (where, sample, problem) in enumerate(data.page(start, count)):
        if problem:
            out.append(SamplePreview(index=start + offset, where=where, problem=problem))
            continue
        try:
            shown = preview_sample(tokenizer, fill_placeholders(sample, placeholders or {}), max_length, train_on_prompt)
        except ValueError as err:  # a chat template that cannot locate assistant turns
            out.append(SamplePreview(index=start + offset, where=where, problem=str(err)))
            continue
        shown.index, shown.where = start + offset, where
        out.append(shown)
    return out


@dataclass
class LengthStats:
    lengths: list[int]
    total: int  # samples in the dataset (lengths may cover fewer, see STATS_LIMIT)
    max_length: int
    median: float = 0.0
    p95: float = 0.0
    truncated_share: float = 0.0
    no_stop: int = 0  # samples whose end-of-turn token would not be trained


def percentile(values: list[int], share: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    rank = share * (len(ordered) - 1)
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def length_stats(data: OpenDataset, tokenizer, max_length: int, train_on_prompt: bool = False,
                 placeholders: dict[str, str] | None = None, limit: int = STATS_LIMIT) -> LengthStats:
    lengths, no_stop = [], 0
    for number, (_, sample, problem) in enumerate(data):
        if number >= limit:
            break
        if problem:
            continue
        try:
            full = encode_full(tokenizer, fill_placeholders(sample, placeholders or {}), train_on_prompt)
        except ValueError:
            continue
        lengths.append(len(full["input_ids"]))
        no_stop += not stops_trained(tokenizer, full["labels"][:max_length])
    stats = LengthStats(lengths=lengths, total=len(data), max_length=max_length, no_stop=no_stop)
    if lengths:
        stats.median = statistics.median(lengths)
        stats.p95 = percentile(lengths, 0.95)
        stats.truncated_share = sum(n > max_length for n in lengths) / len(lengths)
    return stats
