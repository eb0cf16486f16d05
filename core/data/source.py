"""Open a dataset (registry name, file path or hub id) as numbered samples, check it, load it.

`check_dataset` is the validation the user sees before launch (the CLI's
`data check`, the launch checks at Start, the Data tab): it reads the file
once, streaming, and lists every problem with its line up to a cap.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field

from core.data.formats import detect_format, fill_placeholders, resolve_format, row_to_sample
from core.data.readers import Row, RowSource
from core.data.registry import DatasetEntry, DatasetError, dataset_names, find_dataset

PROBLEM_CAP = 50
RANKING_MESSAGE = ("holds preference pairs (chosen/rejected answers, a 'ranking' dataset); supervised fine-tuning "
                   "needs one answer per prompt, so it cannot train on it")


def _hub_rows(entry: DatasetEntry) -> list[Row]:
    from datasets import load_dataset

    try:
        table = load_dataset(entry.hub_id, split=entry.split)
    except Exception as err:  # the datasets library raises many types; all mean "not loadable here"
        raise DatasetError(f"hub dataset '{entry.hub_id}' could not be loaded: {err}") from None
    return [Row(f"row {n}", dict(value)) for n, value in enumerate(table, start=1)]


class OpenDataset:
    """A dataset's rows with the format decided; samples are converted on demand."""

    def __init__(self, entry: DatasetEntry, formatting: str | None = None, columns: dict | None = None):
        if entry.ranking:
            raise DatasetError(f"dataset '{entry.name}' {RANKING_MESSAGE}")
        self.entry = entry
        self.columns = dict(entry.columns if columns is None else columns)
        self.rows = _hub_rows(entry) if entry.hub_id else RowSource(entry.path)
        text_file = getattr(self.rows, "text_file", False)
        head = self._first_rows()
        first = next((r.value for r in head if r.value is not None), None)
        if first is None:
            # Every early row is broken: keep going so the check lists each broken row with its line.
            self.formatting = formatting if formatting and formatting != "auto" else (
                entry.formatting if entry.formatting != "auto" else "")
        elif formatting and formatting != "auto":
            self.formatting = formatting
        else:
            if detect_format(first) == "ranking":
                raise DatasetError(f"dataset '{entry.name}' {RANKING_MESSAGE}")
            self.formatting = resolve_format(entry, first, text_file)

    @property
    def where_name(self) -> str:
        return str(self.entry.path) if self.entry.path else self.entry.hub_id

    def _first_rows(self, count: int = 20) -> list[Row]:
        return self.rows[:count] if isinstance(self.rows, list) else self.rows.page(0, count)

    def __len__(self) -> int:
        return len(self.rows)

    def convert(self, row: Row) -> tuple[str, dict | None, str | None]:
        """(location, sample or None, problem or None) for one row."""
        if row.problem:
            return row.where, None, row.problem
        if not self.formatting:
            return row.where, None, "the format cannot be told: the first rows of the file are unreadable"
        try:
            return row.where, row_to_sample(row.value, self.formatting, self.columns, self.entry.tags), None
        except ValueError as err:
            return row.where, None, str(err)

    def page(self, start: int, count: int) -> list[tuple[str, dict | None, str | None]]:
        rows = self.rows[start : start + count] if isinstance(self.rows, list) else self.rows.page(start, count)
        return [self.convert(r) for r in rows]

    def __iter__(self):
        for row in self.rows:
            yield self.convert(row)


def open_dataset(name: str, registry: str = "", formatting: str | None = None, columns: dict | None = None,
                 policy=None) -> OpenDataset:
    """`policy` (core.safety.access.AccessPolicy): the web server's; files outside its readable folders are refused."""
    return OpenDataset(find_dataset(name, registry, policy), formatting, columns)


@dataclass
class CheckReport:
    name: str
    formatting: str = ""
    num_samples: int = 0
    problems: list[str] = field(default_factory=list)  # "where: what", at most PROBLEM_CAP
    total_problems: int = 0
    used_samples: int = 0  # what training takes: the rows, or a registry entry's num_samples of them
    fatal: str = ""  # the whole dataset is unusable (missing, empty, unreadable, ranking, unknown format)

    @property
    def usable(self) -> bool:
        return not self.fatal and self.total_problems == 0

    def lines(self) -> list[str]:
        if self.fatal:
            return [self.fatal]
        out = list(self.problems)
        if self.total_problems > len(self.problems):
            out.append(f"... and {self.total_problems - len(self.problems)} more problems")
        return out

    def summary(self) -> str:
        if self.fatal:
            return f"{self.name}: unusable"
        if self.total_problems:
            return f"{self.name}: {self.total_problems} problem(s) in {self.num_samples} samples ({self.formatting})"
        return f"{self.name}: {self.num_samples} samples, format {self.formatting}, no problems"


def check_dataset(name: str, registry: str = "", cap: int = PROBLEM_CAP, formatting: str | None = None,
                  columns: dict | None = None, policy=None) -> CheckReport:
    """Read the whole dataset once and report every problem (up to `cap`) with its location."""
    report = CheckReport(name=name)
    try:
        data = open_dataset(name, registry, formatting, columns, policy)
    except DatasetError as err:
        report.fatal = str(err)
        return report
    report.formatting, report.num_samples = data.formatting, len(data)
    report.used_samples = min(len(data), data.entry.num_samples) if data.entry.num_samples else len(data)
    for where, _, problem in data:
        if problem:
            report.total_problems += 1
            if len(report.problems) < cap:
                report.problems.append(f"{data.where_name} {where}: {problem}")
    return report


def check_datasets(value: str, registry: str = "", cap: int = PROBLEM_CAP, policy=None) -> list[CheckReport]:
    names = dataset_names(value)
    if not names:
        return [CheckReport(name="", fatal="no dataset given")]
    return [check_dataset(name, registry, cap, policy=policy) for name in names]


def load_entry_samples(data: OpenDataset, placeholders: dict[str, str], seed: int = 42) -> list[dict]:
    """Every sample of one opened dataset, or DatasetError listing every bad row (up to the cap).
    A registry entry's num_samples keeps a seeded random subset of that size."""
    samples, problems = [], []
    for where, sample, problem in data:
        if problem:
            problems.append(f"{data.where_name} {where}: {problem}")
        else:
            samples.append(fill_placeholders(sample, placeholders))
    if problems:
        more = len(problems) - PROBLEM_CAP
        raise DatasetError("\n".join(problems[:PROBLEM_CAP] + ([f"... and {more} more"] if more > 0 else [])))
    if data.entry.num_samples and data.entry.num_samples < len(samples):
        keep = sorted(random.Random(seed).sample(range(len(samples)), data.entry.num_samples))
        samples = [samples[i] for i in keep]
    return samples


def load_samples(value: str, registry: str, placeholders: dict[str, str], seed: int = 42) -> list[dict]:
    """Every sample of the named datasets; comma-separated datasets are concatenated (mixed)."""
    samples: list[dict] = []
    for name in dataset_names(value):
        samples += load_entry_samples(open_dataset(name, registry), placeholders, seed)
    if not samples:
        raise DatasetError(f"no samples in '{value}'")
    return samples
