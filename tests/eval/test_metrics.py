"""Each answer score against values worked out by hand."""
from __future__ import annotations

import math

import pytest

from core.eval import metrics


def test_number_mode_compares_the_last_number():
    assert metrics.exact_match("The answer is 70.", "18 + 52 = 70", "number") == 1.0
    assert metrics.exact_match("18 + 52 = 71", "18 + 52 = 70", "number") == 0.0
    assert metrics.exact_match("1,234", "1000 + 234 = 1234", "number") == 1.0
    assert metrics.exact_match("-5", "10 - 15 = -5", "number") == 1.0
    assert metrics.exact_match("no number", "10 - 15 = -5", "number") == 0.0
    # contains: the reference's number anywhere in the answer, not only last
    assert metrics.contains("70, or maybe 71", "18 + 52 = 70", "number") == 1.0
    assert metrics.contains("700", "18 + 52 = 70", "number") == 0.0


def test_text_mode_ignores_case_punctuation_and_spacing():
    assert metrics.exact_match("my  name is FERRET", "My name is Ferret.", "text") == 1.0
    assert metrics.exact_match("My name is Ferret!", "My name is Fennec.", "text") == 0.0
    assert metrics.exact_match("我叫Ferret。", "我叫ferret", "text") == 1.0
    assert metrics.contains("Hello. My name is Ferret, nice to meet you.", "my name is ferret", "text") == 1.0
    assert metrics.contains("My name is Ferrets", "my name is ferret", "text") == 0.0


def test_rouge_l_is_the_f1_of_the_longest_common_word_subsequence():
    # LCS of "the cat sat on the mat" and "the cat lay on the mat" is "the cat on the mat": 5 of 6 words each side
    assert metrics.rouge_l("the cat lay on the mat", "the cat sat on the mat") == pytest.approx(5 / 6)
    # answer 2 words, reference 4, LCS 2: precision 1, recall 1/2, F1 2/3
    assert metrics.rouge_l("I am", "I am Ferret today") == pytest.approx(2 / 3)
    assert metrics.rouge_l("", "anything") == 0.0
    # each CJK character is a word: 我 叫 F vs 我 是 F -> LCS 2 of 3
    assert metrics.rouge_l("我是ferret", "我叫ferret") == pytest.approx(2 / 3)


def test_match_mode_and_verdict_and_perplexity():
    assert metrics.match_mode("auto", "arithmetic_2digit_test") == "number"
    assert metrics.match_mode("auto", "identity_heldout") == "text"
    assert metrics.match_mode("text", "arithmetic_2digit_test") == "text"
    zero = {"exact_match": 0.0, "contains": 0.0, "rouge_l": 0.5}
    assert metrics.verdict(zero, {**zero, "exact_match": 1.0}) == "better"
    assert metrics.verdict(zero, {**zero, "rouge_l": 0.4}) == "worse"
    assert metrics.verdict(zero, dict(zero)) == "same"
    assert metrics.perplexity(math.log(7.0)) == pytest.approx(7.0)
    assert metrics.perplexity(None) is None
