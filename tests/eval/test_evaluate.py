"""Evaluation on the tiny model: loss, perplexity and answer scores equal values computed here by hand, for
base (adapter off) and tuned (adapter on) from one loaded model; results are saved whole in the run folder."""
from __future__ import annotations

import json
import math
import shutil

import pytest
import torch

from core.data.encode import encode_samples
from core.eval import evaluate as evaluation
from core.eval import heldout, metrics, results
from core.eval.evaluate import Cancelled, answer_batches, evaluate, greedy_answers
from core.models.adapter import load_run_model
from core.runs.folder import RunFolder
from tests.helpers import greedy_reference


def by_hand_loss(model, tokenizer, samples, max_length) -> float:
    """Mean -log p(label) over every trained token, from log-softmax of the logits, written out."""
    nll, count = 0.0, 0
    for row in encode_samples(tokenizer, samples, max_length):
        with torch.inference_mode():
            logp = torch.log_softmax(model(input_ids=torch.tensor([row["input_ids"]])).logits[0].float(), dim=-1)
        for position in range(1, len(row["input_ids"])):
            label = row["labels"][position]
            if label != -100:
                nll -= float(logp[position - 1, label])
                count += 1
    return nll / count


@pytest.fixture(scope="module")
def loaded(tiny_runs):
    model, tokenizer, spec = load_run_model(tiny_runs["lora"], "cpu")
    return tiny_runs["lora"], model, tokenizer, spec


def test_scores_equal_values_computed_by_hand(loaded):
    run, model, tokenizer, spec = loaded
    name, samples = heldout.held_out_samples(run, "arithmetic_2digit_test")
    samples = samples[:3]
    seen = []
    result = evaluate(model, tokenizer, spec, samples, name=name, mode="number", max_new_tokens=8,
                      progress=lambda fraction, text: seen.append(fraction))
    assert name == "arithmetic_2digit_test" and result["samples"] == 3 and result["answered"] == 3
    assert seen[-1] == pytest.approx(1.0) and seen == sorted(seen)
    for which in ("base", "tuned"):
        if which == "base":
            with model.disable_adapter():
                loss = by_hand_loss(model, tokenizer, samples, spec.data.max_length)
                answers = [greedy_reference(model, tokenizer, s["messages"][0]["content"], 8).strip() for s in samples]
        else:
            loss = by_hand_loss(model, tokenizer, samples, spec.data.max_length)
            answers = [greedy_reference(model, tokenizer, s["messages"][0]["content"], 8).strip() for s in samples]
        scores = result["models"][which]
        assert scores["loss"] == pytest.approx(loss, rel=1e-5)
        assert scores["perplexity"] == pytest.approx(math.exp(loss), rel=1e-5)
        assert [r[which] for r in result["rows"]] == answers
        refs = [s["messages"][-1]["content"] for s in samples]
        # by hand: the answer's last number against the reference's last number ("18 + 52 = 70" -> 70)
        want_em = sum(float(a.replace(",", "").split()[-1].strip(".")) == float(r.split("=")[-1])
                      if a and a.split()[-1].strip(".").lstrip("-").isdigit() else 0.0
                      for a, r in zip(answers, refs)) / 3
        assert scores["exact_match"] == pytest.approx(want_em)
        assert scores["rouge_l"] == pytest.approx(sum(metrics.rouge_l(a, r) for a, r in zip(answers, refs)) / 3)
    # the adapter really is off for the base: the tiny run at lr 2e-2 moved the loss
    assert result["models"]["base"]["loss"] != pytest.approx(result["models"]["tuned"]["loss"], rel=1e-4)
    assert sum(result["verdicts"].values()) == 3
    assert all(r["verdict"] == metrics.verdict(r["base_scores"], r["tuned_scores"]) for r in result["rows"])


def test_base_only_and_the_runs_own_eval_split_and_saving(loaded, tiny_runs, tmp_path):
    _, model, tokenizer, spec = loaded
    # a copy of the run whose job held out a quarter of its data
    run = RunFolder(tmp_path / "run")
    shutil.copytree(tiny_runs["lora"].path, run.path)
    job = run.job.read_text(encoding="utf-8").replace("eval_split: 0.0", "eval_split: 0.25")
    assert "eval_split: 0.25" in job
    run.job.write_text(job, encoding="utf-8")
    name, samples = heldout.held_out_samples(run, "")
    assert name == "eval_split" and len(samples) == 4  # 16 samples, a quarter held out
    result = evaluate(model, tokenizer, spec, samples, name=name, mode="text", max_new_tokens=4, modes=("base",))
    assert list(result["models"]) == ["base"] and result["verdicts"] is None and "tuned" not in result["rows"][0]
    path = results.save(run, name, result)
    assert path == run.path / "eval" / "eval_split.json"
    assert json.loads(path.read_text(encoding="utf-8"))["models"]["base"]["loss"] == result["models"]["base"]["loss"]
    assert list(results.load_all(run)) == ["eval_split"]
    assert not list((run.path / "eval").glob(".*tmp"))  # written whole: no temporary left


def test_cancel_stops_between_samples(loaded):
    run, model, tokenizer, spec = loaded
    _, samples = heldout.held_out_samples(run, "identity_heldout")
    calls = []
    with pytest.raises(Cancelled):
        evaluate(model, tokenizer, spec, samples, name="x", mode="text", max_new_tokens=4,
                 cancelled=lambda: calls.append(1) or len(calls) > 2)
    assert len(calls) == 3


def test_batched_answers_are_each_prompts_own_greedy_answer(loaded):
    """Prompts of different lengths answered together (left padding, masked) give exactly the answers each
    gets alone, with the adapter on and off."""
    run, model, tokenizer, _ = loaded
    _, samples = heldout.held_out_samples(run, "identity_heldout")
    questions = [s["messages"][0]["content"] for s in samples[:6]] + ["Hi", "Tell me, in a few words, " * 6]
    assert len({len(q) for q in questions}) > 4
    answered = []
    for tuned in (False, True):
        with evaluation.adapter_state(model, tuned), torch.inference_mode():
            batched = greedy_answers(model, tokenizer, [[{"role": "user", "content": q}] for q in questions], 10,
                                     done=answered.append)
            alone = [greedy_reference(model, tokenizer, q, 10).strip() for q in questions]
        assert batched == alone
    assert sum(answered) == 2 * len(questions)


def test_answer_batches_keep_within_their_row_and_token_limits(monkeypatch):
    monkeypatch.setattr(evaluation, "ANSWER_BATCH", 3)
    monkeypatch.setattr(evaluation, "ANSWER_TOKENS", 100)
    lengths = [10, 50, 5, 20, 30, 10, 200]
    batches = answer_batches(lengths)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for batch in batches:
        assert len(batch) <= 3
        assert len(batch) == 1 or len(batch) * max(lengths[i] for i in batch) <= 100
    assert [lengths[i] for i in batches[0]] == [5, 10, 10]  # shortest first
    assert [6] in batches  # the 200-token prompt, longer than the token limit, longer than the token limit still gets its own batch
