"""What an evaluation is asked to do, declared once: `app.py eval`'s flags and the Evaluate tab's controls
are built from these fields, with their defaults, help and allowed values."""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path

from core.options import build_options
from core.runs.folder import runs_dir
from core.spec.schema import opt

MATCH_MODES = ("auto", "number", "text")


class EvalError(ValueError):
    """An evaluation that cannot start. `option` names the option at fault, when one is."""

    def __init__(self, message: str, option: str | None = None):
        self.option, self.message = option, message
        super().__init__(f"{option}: {message}" if option else message)


@dataclass
class EvalOptions:
    run: str = opt("", "The finished (or stopped) run to evaluate: a run folder, or a run id in the workspace.", kind="run")
    dataset: str = opt("", "Held-out data: a registry name (e.g. identity_heldout, arithmetic_2digit_test) or a file "
                           "path. Blank: the share the run held out for eval loss (data.eval_split).", kind="dataset")
    base: bool = opt(False, "Score only the base model (adapter off): a baseline without the tuned model's time.")
    max_samples: int = opt(50, "Evaluate at most this many samples of the dataset, from its start (0 = all). "
                               "Greedy answers cost time: about a second per answer for the bundled model on a CPU.",
                           lo=0)
    max_new_tokens: int = opt(64, "Longest generated answer in tokens; an answer also ends at the end-of-turn token.",
                              lo=1, hi=2048)
    match: str = opt("auto", "How answers are compared. number: the last number of the answer against the "
                             "reference's (arithmetic). text: whole answers, ignoring case, punctuation and spacing. "
                             "auto: number for the bundled arithmetic sets, text otherwise.", choices=list(MATCH_MODES))
    benchmark: str = opt("", "Also run lm-evaluation-harness on base and tuned: a bundled task (arithmetic_2digit, "
                             "arithmetic_4digit) or a task YAML file or folder of your own. Blank: no benchmark.",
                         kind="path")
    limit: int = opt(0, "Benchmark documents per task (0 = all).", lo=0)

    def to_dict(self) -> dict:
        return asdict(self)


def resolve(options: EvalOptions, workspace: Path) -> EvalOptions:
    """A run id names a run of `workspace`; the CLI and the Evaluate tab both call this before starting."""
    run = str(options.run or "").strip()
    if run and not Path(run).expanduser().exists() and (runs_dir(workspace) / run).exists():
        run = str(runs_dir(workspace) / run)
    return replace(options, run=run, dataset=str(options.dataset or "").strip(),
                   benchmark=str(options.benchmark or "").strip())


def check_options(options: EvalOptions, policy=None) -> EvalOptions:
    """Raise OptionsError, EvalError or RunNotReady (all ValueErrors) before anything launches; return the
    options with the run made absolute.

    `policy` (core.safety.access.AccessPolicy) is the web server's: the run and a dataset file must lie where
    it reads, and only the bundled benchmark tasks run (a task YAML of one's own may import Python from its
    folder through lm-eval's !function, so it is a terminal's choice, `app.py eval --benchmark`)."""
    from core.data.registry import DatasetError
    from core.eval.benchmark import BUNDLED, task_names
    from core.eval.heldout import held_out_samples
    from core.models.adapter import check_run

    build_options(EvalOptions, options.to_dict())
    if not str(options.run).strip():
        raise EvalError("no run given", "run")
    if policy is not None:
        _check_access(options, policy, BUNDLED)
    run = check_run(options.run)
    if options.dataset or not options.benchmark:
        try:
            held_out_samples(run, options.dataset)
        except (DatasetError, ValueError) as err:
            raise EvalError(str(err), "dataset") from None
    if options.benchmark:
        try:
            task_names(options.benchmark)
        except ValueError as err:
            raise EvalError(str(err), "benchmark") from None
    return replace(options, run=str(run.path))


def _check_access(options: EvalOptions, policy, bundled_tasks) -> None:
    """The served UI's limits, judged on the names alone before anything is opened."""
    from core.data.registry import dataset_names

    if policy.read_refusal(options.run):  # one answer whether such a folder exists or not
        raise EvalError(f"{str(options.run)[:200]!r} is not a run of this workspace; pick one from the list", "run")
    for name in dataset_names(options.dataset) if options.dataset else []:
        if "/" in name or Path(name).suffix:  # a file, not a registry name
            refused = policy.read_refusal(name)
            if refused:
                raise EvalError(refused, "dataset")
    if options.benchmark and options.benchmark not in bundled_tasks:
        raise EvalError(f"the web UI runs the bundled benchmark tasks only ({', '.join(bundled_tasks)}); a task file "
                        "of your own may run code from its folder, so run it from a terminal: app.py eval RUN "
                        "--benchmark FILE", "benchmark")
