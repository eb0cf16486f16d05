"""Scores of one generated answer against its reference, and how base and tuned compare on a sample.

All are LLM-free. Exact match compares normalised answers: in "text" mode the whole answer, ignoring case,
punctuation and spacing; in "number" mode the last number of each (the arithmetic sets answer
"18 + 52 = 70", and "70" or "The answer is 70." is as right). "Contains" asks whether the reference's key
(its last number, or the whole normalised reference) appears in the answer. ROUGE-L comes from the
`rouge-score` package (longest common subsequence F1 over words; CJK characters count as words).
"""
from __future__ import annotations

import math
import re
import unicodedata

NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")
CJK = re.compile(r"([\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff])")
ARITHMETIC_PREFIX = "arithmetic_"
METRICS = ("exact_match", "contains", "rouge_l")


def match_mode(mode: str, dataset_name: str) -> str:
    if mode != "auto":
        return mode
    return "number" if dataset_name.startswith(ARITHMETIC_PREFIX) else "text"


def normalise_text(text: str) -> str:
    """Lower case, punctuation and symbols dropped, runs of spaces made one; 1,234 reads as 1234."""
    text = unicodedata.normalize("NFKC", text).lower()
    text = re.sub(r"(?<=\d),(?=\d{3})", "", text)
    text = "".join(" " if unicodedata.category(c)[0] in "PS" else c for c in text)
    return " ".join(text.split())


def last_number(text: str) -> float | None:
    """The last number written in `text` (commas as thousands separators), or None."""
    found = NUMBER.findall(unicodedata.normalize("NFKC", text))
    if not found:
        return None
    try:
        return float(found[-1].replace(",", ""))
    except ValueError:
        return None


def exact_match(answer: str, reference: str, mode: str) -> float:
    if mode == "number":
        want = last_number(reference)
        return float(want is not None and last_number(answer) == want)
    return float(normalise_text(answer) == normalise_text(reference))


def contains(answer: str, reference: str, mode: str) -> float:
    if mode == "number":
        want = last_number(reference)
        return float(want is not None and want in {float(n.replace(",", "")) for n in NUMBER.findall(answer)})
    key = normalise_text(reference)
    return float(bool(key) and f" {key} " in f" {normalise_text(answer)} ")


class _WordTokenizer:
    """rouge-score's own tokenizer keeps only a-z0-9; this one keeps every letter and makes each CJK character
    a word, so Chinese answers are scored too."""

    def tokenize(self, text: str) -> list[str]:
        return CJK.sub(r" \1 ", normalise_text(text)).split()


_scorer = None


def rouge_l(answer: str, reference: str) -> float:
    global _scorer
    if _scorer is None:
        from rouge_score import rouge_scorer

        _scorer = rouge_scorer.RougeScorer(["rougeL"], tokenizer=_WordTokenizer())
    return _scorer.score(reference, answer)["rougeL"].fmeasure


def answer_scores(answer: str, reference: str, mode: str) -> dict[str, float]:
    return {"exact_match": exact_match(answer, reference, mode), "contains": contains(answer, reference, mode),
            "rouge_l": rouge_l(answer, reference)}


def verdict(base: dict[str, float], tuned: dict[str, float]) -> str:
    """better / worse / same for the tuned answer, judged by exact match, then contains, then ROUGE-L."""
    key = [tuple(round(s[m], 6) for m in METRICS) for s in (base, tuned)]
    return "better" if key[1] > key[0] else "worse" if key[1] < key[0] else "same"


def mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def perplexity(loss: float | None) -> float | None:
    if loss is None:
        return None
    return math.exp(loss) if loss < 700 else math.inf
