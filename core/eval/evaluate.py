"""Score base and tuned on held-out samples from ONE loaded model: the adapter is switched off for the base
and on for the tuned model, so both see exactly the same weights underneath.

Loss is the mean cross-entropy over the tokens training would have scored (the same labels as the trainer:
assistant turns by default), perplexity its exponential. Answers are greedy, in batches (greedy_answers).
"""
from __future__ import annotations

import contextlib
import time

from core.eval import metrics


class Cancelled(Exception):
    """Cancel was pressed; nothing is saved."""


def prompt_and_reference(sample: dict) -> tuple[list[dict], str] | None:
    """(messages before the last answer, that answer) of a conversation ending in an assistant turn; None for
    plain text, which is scored by loss only."""
    messages = sample.get("messages")
    if not messages or messages[-1]["role"] != "assistant":
        return None
    return messages[:-1], messages[-1]["content"]


def adapter_state(model, on: bool):
    """A context in which `model` runs with its adapter on (tuned) or off (base)."""
    if on or not hasattr(model, "disable_adapter"):
        return contextlib.nullcontext()
    return model.disable_adapter()


def token_loss(model, rows: list[dict]) -> tuple[float, int]:
    """(summed negative log-likelihood, number of scored tokens) over encoded rows (input_ids, labels)."""
    import torch

    total, count = 0.0, 0
    for row in rows:
        ids = torch.tensor([row["input_ids"]], device=model.device)
        labels = torch.tensor([row["labels"]], device=model.device)
        logits = model(input_ids=ids).logits[:, :-1].float()
        target = labels[:, 1:]
        nll = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1),
                                                ignore_index=-100, reduction="sum")
        total += float(nll)
        count += int((target != -100).sum())
    return total, count


# Prompts answered together: at most this many, and at most this many prompt tokens in one batch (padding
# included), which bounds the prefill's activations and the cache for long prompts or a big model. Decoding
# a batch costs little more than decoding one row (each token reads all the weights once for the whole
# batch): measured on the quickstart run's 12 held-out questions (2-core AVX2 EPYC, fp32, 64 new tokens),
# base answers 51 s one at a time, 29 s in batches of 4, 12 s in one batch of 12, the answers identical.
ANSWER_BATCH, ANSWER_TOKENS = 16, 4096


def answer_batches(lengths: list[int]) -> list[list[int]]:
    """Indices of prompts grouped shortest first into batches within ANSWER_BATCH and ANSWER_TOKENS."""
    batches: list[list[int]] = []
    for i in sorted(range(len(lengths)), key=lambda i: lengths[i]):
        batch = batches[-1] if batches else None
        if batch is None or len(batch) == ANSWER_BATCH or (len(batch) + 1) * lengths[i] > ANSWER_TOKENS:
            batches.append([i])  # sorted: lengths[i] is the widest row, so it sets the padded width
        else:
            batch.append(i)
    return batches


def greedy_answers(model, tokenizer, prompts: list[list[dict]], max_new_tokens: int, done=lambda n: None) -> list[str]:
    """Greedy answers to `prompts` (conversations before the answer), in batches of similar length,
    left-padded so every prompt ends where generation starts; the attention mask hides the padding, so each
    answer is the one the prompt alone gets. `done(n)` hears after each batch how many were answered."""
    import torch

    from core.chat.prompt import encode_prompt, end_token_ids

    encoded = [encode_prompt(tokenizer, messages)["input_ids"][0].tolist() for messages in prompts]
    ends = end_token_ids(tokenizer, model.generation_config)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else ends[0]
    answers: list[str] = [""] * len(encoded)
    for batch in answer_batches([len(ids) for ids in encoded]):
        width = max(len(encoded[i]) for i in batch)
        ids = torch.tensor([[pad] * (width - len(encoded[i])) + encoded[i] for i in batch], device=model.device)
        mask = torch.tensor([[0] * (width - len(encoded[i])) + [1] * len(encoded[i]) for i in batch],
                            device=model.device)
        out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens, do_sample=False,
                             temperature=None, top_p=None, top_k=None, eos_token_id=ends, pad_token_id=pad)
        for row, i in zip(out[:, width:].tolist(), batch):
            cut = next((n for n, token in enumerate(row) if token in ends), len(row))  # finished rows pad on
            answers[i] = tokenizer.decode(row[:cut], skip_special_tokens=True).strip()
        done(len(batch))
    return answers


def evaluate(model, tokenizer, spec, samples: list[dict], *, name: str, mode: str, max_new_tokens: int,
             modes: tuple[str, ...] = ("base", "tuned"), progress=None, cancelled=lambda: False) -> dict:
    """The whole result of one evaluation (what `<run>/eval/<name>.json` holds).

    `modes` are "base" (adapter off) and/or "tuned" (adapter on); `progress(fraction, text)` hears about each
    step; `cancelled()` is asked between samples and raises Cancelled when true."""
    import torch

    from core.data.encode import encode_samples

    d = spec.data
    rows = encode_samples(tokenizer, samples, d.max_length, d.train_on_prompt)
    pairs = [p for p in map(prompt_and_reference, samples) if p is not None]
    steps, done = len(modes) * (len(rows) + len(pairs)), 0
    scores: dict[str, dict] = {}
    answers: dict[str, list[str]] = {}
    started = time.time()

    def tick(text: str) -> None:
        nonlocal done
        if cancelled():
            raise Cancelled()
        done += 1
        if progress:
            progress(done / steps, text)

    for which in modes:
        with adapter_state(model, which == "tuned"), torch.inference_mode():
            total, count = 0.0, 0
            for row in rows:
                nll, n = token_loss(model, [row])
                total, count = total + nll, count + n
                tick(f"{which}: loss")

            def answered(n: int, which=which) -> None:
                for _ in range(n):
                    tick(f"{which}: answers")

            answers[which] = greedy_answers(model, tokenizer, [prompt for prompt, _ in pairs], max_new_tokens,
                                            done=answered)
        loss = total / count if count else None
        per_sample = [metrics.answer_scores(a, ref, mode) for a, (_, ref) in zip(answers[which], pairs)]
        scores[which] = {"loss": loss, "perplexity": metrics.perplexity(loss), "tokens": count,
                         **{m: metrics.mean([s[m] for s in per_sample]) for m in metrics.METRICS},
                         "per_sample": per_sample}

    table = []
    for i, (prompt, reference) in enumerate(pairs):
        row = {"prompt": prompt[-1]["content"] if prompt else "", "reference": reference}
        for which in modes:
            row[which] = answers[which][i]
            row[f"{which}_scores"] = scores[which]["per_sample"][i]
        if len(modes) == 2:
            row["verdict"] = metrics.verdict(row["base_scores"], row["tuned_scores"])
        table.append(row)
    for which in modes:
        del scores[which]["per_sample"]
    summary = {v: sum(r.get("verdict") == v for r in table) for v in ("better", "worse", "same")}
    return {"dataset": name, "samples": len(samples), "answered": len(pairs), "match": mode,
            "max_new_tokens": max_new_tokens, "models": scores, "verdicts": summary if len(modes) == 2 else None,
            "rows": table, "seconds": round(time.time() - started, 2), "created_at": time.time()}
