"""Grid lines, ties and the plan: combinations in grid order, ties computed per combination by a reader that
executes nothing, and every bad line or combination refused by name before anything is queued."""
from __future__ import annotations

import pytest

from core.runs import queue
from core.sweeps.grid import Grid, SweepError, evaluate_tie, parse_grid_line, tie_names
from core.sweeps.plan import plan
from core.sweeps.preset import read_source, source_from_text
from core.sweeps.start import start_sweep
from tests.helpers import tiny_job


def test_grid_lines_expand_first_line_slowest():
    assert parse_grid_line("lora.r=4, 8,16") == ("lora.r", [4, 8, 16])
    assert parse_grid_line("method=lora,qlora") == ("method", ["lora", "qlora"])
    grid = Grid.from_lines(["lora.r=4,8", "train.epochs=1,3", "method=lora,qlora"])
    combos = grid.combinations()
    assert len(combos) == 8
    assert combos[:3] == [{"lora.r": 4, "train.epochs": 1, "method": "lora"},
                          {"lora.r": 4, "train.epochs": 1, "method": "qlora"},
                          {"lora.r": 4, "train.epochs": 3, "method": "lora"}]
    assert combos[-1] == {"lora.r": 8, "train.epochs": 3, "method": "qlora"}
    # a later line for the same field replaces the earlier one (a sweep file's line, then the command line's)
    assert Grid.from_lines(["lora.r=4"]).merged(Grid.from_lines(["lora.r=16,32"])).lines == {"lora.r": [16, 32]}


def test_ties_are_arithmetic_over_fields():
    values = {"lora.r": 8, "train.epochs": 3}
    assert evaluate_tie("2*lora.r", values.get) == 16
    assert evaluate_tie("(lora.r + 8) / 4 - -1", values.get) == 5
    assert evaluate_tie("lora.r / 3", values.get) == pytest.approx(8 / 3)
    assert tie_names("lora.r * train.epochs + 1") == ["lora.r", "train.epochs"]
    for bad in ("__import__('os').system('true')", "lora.r ** 2", "open('x')", "lora.r if 1 else 2",
                "[1][0]", "'a' * 3", "2 *"):
        with pytest.raises(ValueError):
            tie_names(bad)
    # a dotted name is only ever a key to look up, never an attribute: one that is no field is refused by name
    assert Grid.from_lines(["lora.r=4"], ["lora.alpha=lora.r.__class__"]).problems() == [
        ("tie lora.alpha", "lora.r.__class__: unknown field")]
    with pytest.raises(ValueError, match="divides by zero"):
        evaluate_tie("lora.r / 0", values.get)


def test_plan_applies_ties_per_combination(tiny_model_dir):
    grid = Grid.from_lines(["lora.r=2,4", "train.max_steps=1,2"], ["lora.alpha=2*lora.r"])
    planned = plan(tiny_job(tiny_model_dir), grid)
    assert [c.settings for c in planned] == [
        {"lora.r": 2, "train.max_steps": 1, "lora.alpha": 4}, {"lora.r": 2, "train.max_steps": 2, "lora.alpha": 4},
        {"lora.r": 4, "train.max_steps": 1, "lora.alpha": 8}, {"lora.r": 4, "train.max_steps": 2, "lora.alpha": 8}]
    assert [(c.spec.lora.r, c.spec.lora.alpha, c.spec.train.max_steps) for c in planned] == [
        (2, 4.0, 1), (2, 4.0, 2), (4, 8.0, 1), (4, 8.0, 2)]
    # a tie may read a field the grid does not sweep: the base job's value, else the spec's default
    fixed = plan(tiny_job(tiny_model_dir), Grid.from_lines(["train.max_steps=1"], ["lora.alpha=lora.r*3"]))
    assert fixed[0].spec.lora.alpha == 12  # the tiny job's r is 4


@pytest.mark.parametrize("grid_lines, ties, named", [
    (["lora.alhpa=4,8"], [], "lora.alhpa: unknown field (did you mean 'alpha'?)"),
    (["lroa.r=4"], [], "lroa.r: unknown section"),
    (["lora.r=4,8,4"], [], "lora.r: the grid line lists a value twice"),
    (["lora.r"], [], "lora.r: a grid line must look like"),
    (["lora.r=4"], ["lora.alpha=lora.r+__import__('os')"], "tie lora.alpha: only numbers"),
    (["lora.r=4"], ["lora.alpha=2*lora.rr"], "tie lora.alpha: lora.rr: unknown field"),
    (["lora.r=4,8"], ["lora.r=2*lora.alpha"], "tie lora.r: the field is also a grid line"),
    (["lora.r=4,0"], [], "combination 2 (lora.r=0) lora.r: 0 is below the minimum 1"),
    (["method=lora,lorra"], [], "combination 2 (method=lorra) method: 'lorra' is not one of"),
    (["lora.r=4", "train.epochs=1,x"], [], "combination 2 (lora.r=4, train.epochs=x) train.epochs: expected a number"),
    (["lora.r=3,1"], ["lora.alpha=lora.r-2"], "combination 2 (lora.r=1) lora.alpha: -1.0 is below the minimum"),
    (["data.dataset=identity,no_such_set"], [], "combination 2 (data.dataset=no_such_set) data.dataset"),
])
def test_bad_sweeps_are_refused_by_name_before_anything_is_queued(tiny_model_dir, tmp_path, grid_lines, ties, named):
    with pytest.raises(SweepError) as caught:
        start_sweep(tmp_path, tiny_job(tiny_model_dir), Grid.from_lines(grid_lines, ties))
    assert named in str(caught.value)
    assert queue.is_empty(tmp_path) and not (tmp_path / "sweeps").exists()


def test_a_bad_eval_dataset_is_refused_before_queuing(tiny_model_dir, tmp_path):
    with pytest.raises(SweepError, match="^eval: "):
        start_sweep(tmp_path, tiny_job(tiny_model_dir), Grid.from_lines(["lora.r=2,4"]), eval_dataset="no_such_set")
    assert queue.is_empty(tmp_path)


def test_sweep_files_and_plain_jobs_are_both_sources(tmp_path):
    source = source_from_text("name: t\njob: {method: lora, lora: {r: 4}}\ngrid: {lora.r: [4, 8], train.epochs: 1}\n"
                              "ties: {lora.alpha: 2*lora.r}\neval: arithmetic_2digit_test\n", "s.yaml")
    assert source.grid.lines == {"lora.r": [4, 8], "train.epochs": [1]}
    assert source.grid.ties == {"lora.alpha": "2*lora.r"} and source.eval == "arithmetic_2digit_test"
    assert source.job == {"method": "lora", "lora": {"r": 4}} and source.name == "t"
    plain = source_from_text("method: lora\nlora: {r: 4}\n", "j.yaml")
    assert plain.job == {"method": "lora", "lora": {"r": 4}} and not plain.grid.lines
    with pytest.raises(SweepError, match="unknown key 'gird'"):
        source_from_text("job: {}\ngrid: {lora.r: [4]}\ngird: 1\n", "s.yaml")


def test_preset_sweeps_plan_cleanly():
    """Every shipped sweep file parses and each of its combinations is a valid job (launch checks included)."""
    from core.paths import PROJECT_ROOT

    files = sorted((PROJECT_ROOT / "presets" / "sweeps").glob("*.yaml"))
    assert files
    for path in files:
        source = read_source(path)
        assert source.grid.lines and source.name, path
        assert len(plan(source.job, source.grid)) >= 2, path
