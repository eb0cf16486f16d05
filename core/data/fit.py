"""Whether well-formed data fits the job: the rules the trainer would otherwise find out only after a run
folder exists. The launch checks and the trainer ask the same functions, so they agree.
"""
from __future__ import annotations


def held_out_count(num_samples: int, eval_split: float) -> int:
    """How many samples the eval split holds out of `num_samples` (the trainer's rounding)."""
    return round(num_samples * eval_split) if eval_split else 0


def eval_split_problem(num_samples: int, eval_split: float, max_samples: int = 0) -> str | None:
    """Why data.eval_split leaves no eval or no training sample, or None."""
    if not eval_split:
        return None
    count = min(num_samples, max_samples) if max_samples else num_samples
    held = held_out_count(count, eval_split)
    if 1 <= held < count:
        return None
    side = "no eval sample" if held < 1 else "no training sample"
    return (f"{eval_split:g} of {count} samples leaves {side} (it holds out {held}); "
            f"{'raise it or use more data' if held < 1 else 'lower it'}, or set it to 0 for no eval loss")


def dataset_samples(spec):
    """(location, sample) of every good sample of the job's datasets, in file order, placeholders filled."""
    from core.data.formats import fill_placeholders
    from core.data.registry import dataset_names
    from core.data.source import open_dataset

    d = spec.data
    for name in dataset_names(d.dataset):
        data = open_dataset(name, d.registry)
        for where, sample, _ in data:
            if sample is not None:
                yield f"{data.where_name} {where}", fill_placeholders(sample, {"name": d.name, "author": d.author})


def max_length_problems(samples, tokenizer, max_length: int, train_on_prompt: bool) -> list[tuple[str, str]]:
    """(field, message) when no sample keeps a trained token within max_length, or the chat template fails.

    Stops at the first sample that keeps one, so a usable dataset costs one or two encodings; only a
    dataset the trainer would refuse anyway is encoded whole."""
    from core.data.encode import encode_sample

    count = 0
    for where, sample in samples:
        count += 1
        try:
            row = encode_sample(tokenizer, sample, max_length, train_on_prompt)
        except Exception as err:  # the model's chat template raised on this sample (Jinja, role rules)
            return [("model.path", f"the model's chat template fails on {where}: {type(err).__name__}: {str(err)[:300]}")]
        if any(label != -100 for label in row["labels"]):
            return []
    if not count:
        return []
    return [("data.max_length", f"no sample keeps a trained (answer) token within {max_length} tokens: in each of "
                                f"the {count} samples the answer starts after the cut; raise data.max_length")]
