"""Which samples a job trains on and which it holds out: one rule, read by the trainer and by evaluation."""
from __future__ import annotations

import random


def split_samples(spec) -> tuple[list[dict], list[dict]]:
    """(train samples, held-out samples) of the job's data, before encoding.

    Samples keep their file order unless a subset or a split is asked for; then they are shuffled with the
    training seed first, so the subset and the held-out share are a fair draw, and evaluating the run later
    finds exactly the samples the trainer held out."""
    from core.data.fit import eval_split_problem, held_out_count
    from core.data.source import load_samples

    d = spec.data
    samples = load_samples(d.dataset, d.registry, {"name": d.name, "author": d.author}, seed=spec.train.seed)
    if d.max_samples or d.eval_split:
        random.Random(spec.train.seed).shuffle(samples)
    if d.max_samples:
        samples = samples[: d.max_samples]
    problem = eval_split_problem(len(samples), d.eval_split)  # the launch checks asked the same
    if problem:
        raise ValueError(f"data.eval_split: {problem}")
    held = held_out_count(len(samples), d.eval_split)
    return samples[held:], samples[:held]
