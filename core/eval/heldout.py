"""The samples an evaluation scores: a named or given dataset, or the share the run itself held out."""
from __future__ import annotations

from pathlib import Path

EVAL_SPLIT = "eval_split"  # the result name of the run's own held-out share


def source_name(dataset: str) -> str:
    """The name a result is saved under (`<run>/eval/<name>.json`): a registry name, or a file's stem."""
    if not dataset:
        return EVAL_SPLIT
    return Path(dataset).stem if ("/" in dataset or Path(dataset).suffix) else dataset


def held_out_samples(run, dataset: str) -> tuple[str, list[dict]]:
    """(result name, samples) for `run`. {{name}} and {{author}} are filled in with the run's own values,
    so an identity set asks about the name the run was taught. Raises DatasetError or ValueError."""
    from core.data.source import load_samples
    from core.data.split import split_samples
    from core.spec import load_spec

    spec = load_spec(str(run.job))
    if not dataset:
        if not spec.data.eval_split:
            raise ValueError(f"run {run.run_id} held out no data (data.eval_split is 0); name a dataset to evaluate on")
        return EVAL_SPLIT, split_samples(spec)[1]
    d = spec.data
    return source_name(dataset), load_samples(dataset, d.registry, {"name": d.name, "author": d.author},
                                              seed=spec.train.seed)
