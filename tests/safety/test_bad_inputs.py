"""More than a hundred bad inputs, each refused before launch with its place named (field, file, line), or
accepted with a note where that is the right answer. None may end in a traceback, hang, or pass silently.

Most go through the same core functions the CLI and the UI call (parsing, --set, the launch checks, the
dataset check, the form's conversion); a few run the real `app.py` in a subprocess, to show the terminal
user sees a message and no traceback. The runs that fail at run time (a NaN loss, a full disk) are in
tests/training/test_guards.py: they need the trainer.

`BAD_INPUTS_TABLE=FILE pytest tests/safety/test_bad_inputs.py` also writes the markdown table of every
input, where it was given and what happened.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from core.data.source import check_dataset
from core.spec import SpecError, check_launch, parse_overrides, parse_yaml_text, spec_from_dict
from core.spec.parse import merge, read_yaml
from tests.helpers import tiny_job

PROJECT = Path(__file__).resolve().parents[2]
REFUSED_PARSE = "refused before launch (parsing)"
REFUSED_LAUNCH = "refused before launch (launch checks)"
REFUSED_ROW = "bad row listed with its line (data check and launch)"
REFUSED_FILE = "dataset refused whole, place named (data check and launch)"
REFUSED_CLI = "refused by the command, exit code != 0, no traceback"
NOTE = "accepted with a note"


@dataclass
class Ctx:
    tmp: Path
    model: Path
    monkeypatch: pytest.MonkeyPatch


@dataclass
class Case:
    id: str
    where: str
    given: str  # the input, as a user would describe it (for the table)
    run: Callable[[Ctx], tuple[str, str]]
    outcome: str
    places: tuple[str, ...]  # what the message must name


# --- how each kind of input is given ---------------------------------------------------------------------

def problems_text(err: SpecError) -> str:
    return "\n".join(f"{k}: {m}" if k else m for k, m in err.problems)


def via_set(*pairs: str, method: str | None = None):
    def run(ctx: Ctx):
        try:
            data = merge({"method": method} if method else {}, parse_overrides(list(pairs)))
            spec_from_dict(data)
        except SpecError as err:
            return REFUSED_PARSE, problems_text(err)
        return "accepted", ""
    return run


def via_yaml(text: str):
    def run(ctx: Ctx):
        try:
            spec_from_dict(parse_yaml_text(text, source="job.yaml"))
        except SpecError as err:
            return REFUSED_PARSE, problems_text(err)
        return "accepted", ""
    return run


def via_yaml_file(make: Callable[[Path], None]):
    def run(ctx: Ctx):
        path = ctx.tmp / "job.yaml"
        make(path)
        try:
            spec_from_dict(read_yaml(str(path)))
        except SpecError as err:
            return REFUSED_PARSE, problems_text(err)
        return "accepted", ""
    return run


def via_launch(sections: dict | None = None, prepare: Callable[[Ctx], dict] | None = None):
    """Parse the tiny job with `sections` (or what `prepare` returns) and run the launch checks."""
    def run(ctx: Ctx):
        extra = prepare(ctx) if prepare else sections
        try:
            spec = spec_from_dict(tiny_job(ctx.model, **extra))
        except SpecError as err:
            return REFUSED_PARSE, problems_text(err)
        try:
            notes = check_launch(spec)
        except SpecError as err:
            return REFUSED_LAUNCH, problems_text(err)
        return (NOTE, "\n".join(notes)) if notes else ("accepted", "")
    return run


def via_data(name: str, content: str | bytes, registry: dict | str | None = None, dataset: str | None = None):
    """Write a data file (and a registry beside it) and run the dataset check on it."""
    def run(ctx: Ctx):
        path = ctx.tmp / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8", "surrogatepass"))
        reg = ""
        if registry is not None:
            reg_path = ctx.tmp / "dataset_info.json"
            reg_path.write_text(registry if isinstance(registry, str) else json.dumps(registry))
            reg = str(reg_path)
        report = check_dataset(dataset or str(path), reg)
        if report.fatal:
            return REFUSED_FILE, report.fatal
        if report.total_problems:
            return REFUSED_ROW, "\n".join(report.lines())
        return "accepted", report.summary()
    return run


def via_model(change: Callable[[Path], None]):
    """Copy the tiny model, break it with `change`, and run the launch checks on a job that uses it."""
    def prepare(ctx: Ctx) -> dict:
        folder = ctx.tmp / "model"
        shutil.copytree(ctx.model, folder)
        change(folder)
        return {"model": {"path": str(folder)}}
    return via_launch(prepare=prepare)


def via_form(changes: dict, launch: bool = False):
    """The Train tab's form holding the quickstart preset, with `changes` made as the browser sends them
    (None for an emptied number box), converted by the form and parsed by the spec."""
    def run(ctx: Ctx):
        import gradio as gr

        from core.spec import load_spec
        from webui.form import JobForm
        from webui.train_tab import choices_for

        preset = load_spec(str(PROJECT / "presets" / "quickstart.yaml"))
        form = JobForm("en", choices_for)
        with gr.Blocks():
            for section in ("model", "data", "lora", "train", "runtime"):
                form.render_section(section, defaults=preset)
        values = dict(zip(form.components, form.values_from(preset)))
        values.update(changes)
        try:
            spec = spec_from_dict(form.to_dict(preset.method, list(values.values()), list(values)))
            if launch:
                check_launch(spec)
        except SpecError as err:
            return (REFUSED_LAUNCH if launch else REFUSED_PARSE), problems_text(err)
        return "accepted", ""
    return run


def via_cli(*args: str, prepare: Callable[[Path], None] | None = None):
    """The real `app.py` in a subprocess (the terminal user's view); returns its stderr."""
    def run(ctx: Ctx):
        if prepare:
            prepare(ctx.tmp)
        argv = [a.replace("{tmp}", str(ctx.tmp)) for a in args]
        env = dict(os.environ, LORA_WORKBENCH_WORKSPACE=str(ctx.tmp / "ws"))
        done = subprocess.run([sys.executable, str(PROJECT / "app.py"), *argv], capture_output=True, text=True,
                              timeout=120, cwd=PROJECT, env=env)
        if done.returncode == 0:
            return "accepted", done.stdout
        return REFUSED_CLI, done.stderr + done.stdout  # `data check` reports on stdout
    return run


# --- inputs that build files -------------------------------------------------------------------------------

ALIAS_BOMB = "\n".join([
    'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]',
    *[f"{chr(98 + i)}: &{chr(98 + i)} [{','.join([f'*{chr(97 + i)}'] * 9)}]" for i in range(8)],
])
SMALL_BOMB = "\n".join([
    'a: &a [x,x,x,x,x,x,x,x,x,x]',
    *[f"{chr(98 + i)}: &{chr(98 + i)} [{','.join([f'*{chr(97 + i)}'] * 9)}]" for i in range(5)],
])
DEEP_JSONL = '{"instruction": "a", "output": ' + "[" * 100_000 + "]" * 100_000 + "}\n"
GOOD_ROW = {"instruction": "Say hi.", "output": "Hi."}


def rows(*values) -> str:
    return "".join((v if isinstance(v, str) else json.dumps(v)) + "\n" for v in values)


def write(path: Path, text: str | bytes) -> None:
    path.write_bytes(text if isinstance(text, bytes) else text.encode())


def safetensors_with_header(header: dict, data: bytes = b"") -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data


def truncate_weights(folder: Path) -> None:
    path = folder / "model.safetensors"
    path.write_bytes(path.read_bytes()[:100_000])


def json_edit(name: str, change: Callable[[dict], object]):
    def edit(folder: Path):
        path = folder / name
        data = json.loads(path.read_text())
        result = change(data)
        path.write_text(json.dumps(data if result is None else result))
    return edit


def remove(*names: str):
    def edit(folder: Path):
        for name in names:
            target = folder / name
            if target.exists():
                target.unlink()
        if "tokenizer_config.json" in names:  # the template may live in either file
            (folder / "chat_template.jinja").unlink(missing_ok=True)
    return edit


def without_template(folder: Path) -> None:
    (folder / "chat_template.jinja").unlink(missing_ok=True)
    json_edit("tokenizer_config.json", lambda d: d.pop("chat_template", None) and None)(folder)


def sharded(shard_names: list[str]):
    def edit(folder: Path):
        (folder / "model.safetensors").unlink()
        index = {"metadata": {}, "weight_map": {f"w{i}": name for i, name in enumerate(shard_names)}}
        (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    return edit


def registry_is_folder(ctx: Ctx) -> tuple[str, str]:
    report = check_dataset("identity", str(ctx.tmp))
    return (REFUSED_FILE, report.fatal) if report.fatal else ("accepted", report.summary())


def one_sample_file(ctx_tmp: Path) -> str:
    path = ctx_tmp / "one.jsonl"
    path.write_text(rows(GOOD_ROW))
    return str(path)


# --- the cases ---------------------------------------------------------------------------------------------

S, Y, C, D, M, L, F = "--set", "YAML job file", "CLI", "data file", "model folder", "job at Start", "UI form"

CASES = [
    # --set overrides
    Case("set-unclosed-list", S, "--set 'lora.r=[1,2'", via_set("lora.r=[1,2"), REFUSED_PARSE, ("lora.r", "malformed YAML")),
    Case("set-flow-mapping", S, "--set 'data.name={{author}}'", via_set("data.name={{author}}"), REFUSED_PARSE,
         ("data.name", "quotes")),
    Case("set-python-tag", S, "--set 'lora.r=!!python/object/apply:os.system [\"id\"]'",
         via_set('lora.r=!!python/object/apply:os.system ["id"]'), REFUSED_PARSE, ("lora.r", "tags")),
    Case("set-mapping", S, "--set 'lora.r={a: 1}'", via_set("lora.r={a: 1}"), REFUSED_PARSE, ("lora.r", "a mapping")),
    Case("set-nested-list", S, "--set 'lora.targets=[[query]]'", via_set("lora.targets=[[query]]"), REFUSED_PARSE,
         ("lora.targets", "plain")),
    Case("set-nan", S, "--set train.weight_decay=nan", via_set("train.weight_decay=nan"), REFUSED_PARSE,
         ("train.weight_decay", "finite")),
    Case("set-yaml-nan", S, "--set train.learning_rate=.nan", via_set("train.learning_rate=.nan"), REFUSED_PARSE,
         ("train.learning_rate", "finite")),
    Case("set-inf", S, "--set train.learning_rate=inf", via_set("train.learning_rate=inf"), REFUSED_PARSE,
         ("train.learning_rate", "finite")),
    Case("set-minus-inf", S, "--set train.epochs=-.inf", via_set("train.epochs=-.inf"), REFUSED_PARSE,
         ("train.epochs", "finite")),
    Case("set-overflow", S, "--set lora.dropout=1e400", via_set("lora.dropout=1e400"), REFUSED_PARSE,
         ("lora.dropout", "finite")),
    Case("set-nan-epochs", S, "--set train.epochs=nan", via_set("train.epochs=nan"), REFUSED_PARSE,
         ("train.epochs", "finite")),
    Case("set-nan-int", S, "--set train.max_steps=.nan", via_set("train.max_steps=.nan"), REFUSED_PARSE,
         ("train.max_steps", "finite")),
    Case("set-steps-1e21", S, "--set train.max_steps=1e21", via_set("train.max_steps=1e21"), REFUSED_PARSE,
         ("train.max_steps", "maximum 1000000")),
    Case("set-steps-negative", S, "--set train.max_steps=-1", via_set("train.max_steps=-1"), REFUSED_PARSE,
         ("train.max_steps", "minimum 0")),
    Case("set-seed-2-32", S, "--set train.seed=4294967296", via_set("train.seed=4294967296"), REFUSED_PARSE,
         ("train.seed", "maximum 4294967295")),
    Case("set-seed-negative", S, "--set train.seed=-5", via_set("train.seed=-5"), REFUSED_PARSE, ("train.seed", "minimum")),
    Case("set-warmup-huge", S, "--set train.warmup_steps=99999999", via_set("train.warmup_steps=99999999"),
         REFUSED_PARSE, ("train.warmup_steps", "maximum")),
    Case("set-logging-zero", S, "--set train.logging_steps=0", via_set("train.logging_steps=0"), REFUSED_PARSE,
         ("train.logging_steps", "minimum 1")),
    Case("set-logging-huge", S, "--set train.logging_steps=10000000", via_set("train.logging_steps=10000000"),
         REFUSED_PARSE, ("train.logging_steps", "maximum")),
    Case("set-save-huge", S, "--set train.save_steps=10000000", via_set("train.save_steps=10000000"), REFUSED_PARSE,
         ("train.save_steps", "maximum")),
    Case("set-eval-steps-huge", S, "--set data.eval_steps=2000000", via_set("data.eval_steps=2000000"), REFUSED_PARSE,
         ("data.eval_steps", "maximum")),
    Case("set-max-samples-huge", S, "--set data.max_samples=100000000", via_set("data.max_samples=100000000"),
         REFUSED_PARSE, ("data.max_samples", "maximum")),
    Case("set-adalora-tinit", S, "--set method=adalora --set adalora.tinit=5000000",
         via_set("adalora.tinit=5000000", method="adalora"), REFUSED_PARSE, ("adalora.tinit", "maximum")),
    Case("set-adalora-tfinal", S, "--set method=adalora --set adalora.tfinal=-1",
         via_set("adalora.tfinal=-1", method="adalora"), REFUSED_PARSE, ("adalora.tfinal", "minimum")),
    Case("set-adalora-delta", S, "--set method=adalora --set adalora.delta_t=0",
         via_set("adalora.delta_t=0", method="adalora"), REFUSED_PARSE, ("adalora.delta_t", "minimum 1")),
    Case("set-vera-seed", S, "--set method=vera --set vera.projection_seed=2147483648",
         via_set("vera.projection_seed=2147483648", method="vera"), REFUSED_PARSE, ("vera.projection_seed", "maximum")),
    Case("set-rank-fraction", S, "--set lora.r=1.5", via_set("lora.r=1.5"), REFUSED_PARSE, ("lora.r", "whole number")),
    Case("set-rank-bool", S, "--set lora.r=true", via_set("lora.r=true"), REFUSED_PARSE, ("lora.r", "whole number")),
    Case("set-rank-empty", S, "--set lora.r=", via_set("lora.r="), REFUSED_PARSE, ("lora.r", "whole number")),
    Case("set-batch-text", S, "--set train.batch_size=abc", via_set("train.batch_size=abc"), REFUSED_PARSE,
         ("train.batch_size", "whole number")),
    Case("set-bool-maybe", S, "--set data.train_on_prompt=maybe", via_set("data.train_on_prompt=maybe"),
         REFUSED_PARSE, ("data.train_on_prompt", "true or false")),
    Case("set-clip-huge", S, "--set train.max_grad_norm=1e9", via_set("train.max_grad_norm=1e9"), REFUSED_PARSE,
         ("train.max_grad_norm", "maximum")),
    Case("set-unknown-section", S, "--set nosuch.key=1", via_set("nosuch.key=1"), REFUSED_PARSE,
         ("nosuch", "unknown section")),
    Case("set-unknown-key", S, "--set lora.alpah=16", via_set("lora.alpah=16"), REFUSED_PARSE,
         ("lora.alpah", "unknown key", "did you mean 'alpha'")),
    Case("set-no-dot", S, "--set lora=16", via_set("lora=16"), REFUSED_PARSE, ("lora", "section.key")),
    Case("set-no-equals", S, "--set justtext", via_set("justtext"), REFUSED_PARSE, ("justtext", "section.key=value")),
    Case("set-bad-method", S, "--set method=lorax", via_set("method=lorax"), REFUSED_PARSE, ("method", "not one of")),
    Case("set-hex-rate", S, "--set train.learning_rate=0x10", via_set("train.learning_rate=0x10"), REFUSED_PARSE,
         ("train.learning_rate", "maximum")),
    Case("set-length-huge", S, "--set data.max_length=99999999", via_set("data.max_length=99999999"), REFUSED_PARSE,
         ("data.max_length", "maximum")),
    Case("set-threads-huge", S, "--set runtime.threads=100000", via_set("runtime.threads=100000"), REFUSED_PARSE,
         ("runtime.threads", "maximum")),
    Case("set-scheduler", S, "--set train.lr_scheduler=warp", via_set("train.lr_scheduler=warp"), REFUSED_PARSE,
         ("train.lr_scheduler", "not one of")),
    Case("set-target", S, "--set 'lora.targets=[query, nosuch]'", via_set("lora.targets=[query, nosuch]"),
         REFUSED_PARSE, ("lora.targets", "'nosuch' is not one of")),
    Case("set-long-number", S, "--set lora.r=<5,000 digits>", via_set("lora.r=" + "9" * 5000), REFUSED_PARSE,
         ("lora.r",)),
    # YAML job files
    Case("yaml-alias-bomb", Y, "a 340-byte 'billion laughs' alias bomb (9 levels)", via_yaml(ALIAS_BOMB), REFUSED_PARSE,
         ("job.yaml", "line 7", "more than 50 aliases")),
    Case("yaml-small-alias-bomb", Y, "a 200-byte alias bomb within 50 aliases (6 levels, 590,000 values)",
         via_yaml(SMALL_BOMB), REFUSED_PARSE, ("job.yaml", "aliases expand to more than 100,000 values")),
    Case("yaml-many-aliases", Y, "60 aliases of one anchor",
         via_yaml("x: &x 1\nlist: [" + ", ".join(["*x"] * 60) + "]\n"), REFUSED_PARSE, ("job.yaml", "more than 50 aliases")),
    Case("yaml-deep", Y, "a value nested 40 levels deep", via_yaml("train: " + "[" * 40 + "]" * 40 + "\n"),
         REFUSED_PARSE, ("job.yaml", "line 1", "nested deeper than 32")),
    Case("yaml-duplicate-section", Y, "section 'train' given twice",
         via_yaml("train:\n  epochs: 1\nlora:\n  r: 4\ntrain:\n  epochs: 2\n"), REFUSED_PARSE,
         ("job.yaml", "line 5", "duplicate key 'train'", "first given at line 1")),
    Case("yaml-duplicate-key", Y, "learning_rate given twice in train",
         via_yaml("train:\n  learning_rate: 1e-4\n  epochs: 2\n  learning_rate: 0.5\n"), REFUSED_PARSE,
         ("line 4", "duplicate key 'learning_rate'", "first given at line 2")),
    Case("yaml-duplicate-flow", Y, "lora: {r: 8, r: 16}", via_yaml("lora: {r: 8, r: 16}\n"), REFUSED_PARSE,
         ("duplicate key 'r'",)),
    Case("yaml-tab-indent", Y, "a tab used for indentation", via_yaml("train:\n\tepochs: 2\n"), REFUSED_PARSE,
         ("malformed YAML", "line 2")),
    Case("yaml-unclosed", Y, "an unclosed bracket", via_yaml("lora:\n  targets: [query, value\n"), REFUSED_PARSE,
         ("malformed YAML", "line 3")),
    Case("yaml-python-tag", Y, "!!python/object/apply:os.system in the file",
         via_yaml("data:\n  name: !!python/object/apply:os.system ['id']\n"), REFUSED_PARSE, ("line 2", "tags")),
    Case("yaml-top-list", Y, "the file is a list", via_yaml("- lora\n- train\n"), REFUSED_PARSE, ("must hold a mapping",)),
    Case("yaml-section-list", Y, "lora: [1, 2]", via_yaml("lora: [1, 2]\n"), REFUSED_PARSE, ("lora", "mapping of fields")),
    Case("yaml-value-mapping", Y, "lora: {r: {a: 1}}", via_yaml("lora: {r: {a: 1}}\n"), REFUSED_PARSE,
         ("lora.r", "whole number")),
    Case("yaml-empty-number", Y, "train: {epochs: } (no value)", via_yaml("train:\n  epochs:\n"), REFUSED_PARSE,
         ("train.epochs", "is empty")),
    Case("yaml-nan", Y, "learning_rate: .nan", via_yaml("train:\n  learning_rate: .nan\n"), REFUSED_PARSE,
         ("train.learning_rate", "finite")),
    Case("yaml-inf", Y, "weight_decay: .inf", via_yaml("train:\n  weight_decay: .inf\n"), REFUSED_PARSE,
         ("train.weight_decay", "finite")),
    Case("yaml-1e21", Y, "max_steps: 1.0e+21", via_yaml("train:\n  max_steps: 1.0e+21\n"), REFUSED_PARSE,
         ("train.max_steps", "maximum")),
    Case("yaml-long-int", Y, "an integer of 5,000 digits", via_yaml("lora:\n  r: " + "9" * 5000 + "\n"),
         REFUSED_PARSE, ("job.yaml", "cannot be read")),
    Case("yaml-method-list", Y, "method: [lora]", via_yaml("method: [lora]\n"), REFUSED_PARSE, ("method", "not one of")),
    Case("yaml-number-key", Y, "a section named 1", via_yaml("1: x\n"), REFUSED_PARSE, ("1", "unknown section")),
    Case("yaml-huge-key", Y, "a section name of 10,000 characters", via_yaml("x" * 10_000 + ": 1\n"), REFUSED_PARSE,
         ("malformed YAML", "line 1")),
    Case("yaml-long-unknown-key", Y, "an unknown key of 1,000 characters", via_yaml("lora:\n  " + "k" * 1000 + ": 1\n"),
         REFUSED_PARSE, ("unknown key", "(1002 characters)")),
    Case("yaml-nul", Y, "NUL bytes in the file", via_yaml("train:\n  epochs: 1\x00\n"), REFUSED_PARSE,
         ("malformed YAML",)),
    Case("yaml-binary-tag", Y, "dataset: !!binary aGVsbG8=", via_yaml("data:\n  dataset: !!binary aGVsbG8=\n"),
         REFUSED_PARSE, ("data.dataset", "binary")),
    Case("yaml-date", Y, "epochs: 2024-01-01", via_yaml("train:\n  epochs: 2024-01-01\n"), REFUSED_PARSE,
         ("train.epochs", "expected a number")),
    Case("yaml-not-utf8", Y, "a job file in Latin-1", via_yaml_file(lambda p: write(p, "data:\n  name: caf\xe9\n".encode("latin-1"))),
         REFUSED_PARSE, ("job.yaml", "not UTF-8")),
    Case("yaml-too-big", Y, "a 2 MB job file", via_yaml_file(lambda p: write(p, "# " + "x" * 2_000_000 + "\n")),
         REFUSED_PARSE, ("job.yaml", "larger than 1,000,000 bytes")),
    Case("yaml-folder", Y, "the job file is a folder", via_yaml_file(lambda p: p.mkdir()), REFUSED_PARSE,
         ("job.yaml", "is a folder")),
    Case("yaml-missing", Y, "the job file does not exist", via_yaml_file(lambda p: None), REFUSED_PARSE,
         ("job file not found",)),
    # the real command line
    Case("cli-folder-job", C, "app.py train <a folder>", via_cli("train", "{tmp}"), REFUSED_CLI, ("is a folder",)),
    Case("cli-alias-bomb", C, "app.py params <alias bomb>",
         via_cli("params", "{tmp}/bomb.yaml", prepare=lambda t: write(t / "bomb.yaml", ALIAS_BOMB)), REFUSED_CLI,
         ("bomb.yaml", "more than 50 aliases")),
    Case("cli-deep-json", C, "app.py data check <JSON nested 100,000 deep>",
         via_cli("data", "check", "{tmp}/deep.jsonl", prepare=lambda t: write(t / "deep.jsonl", DEEP_JSONL)),
         REFUSED_CLI, ("deep.jsonl line 1", "nested too deeply")),
    Case("cli-registry-folder", C, "app.py data check identity --registry <a folder>",
         via_cli("data", "check", "identity", "--registry", "{tmp}"), REFUSED_CLI, ("is a folder",)),
    Case("cli-set-broken", C, "app.py params quickstart.yaml --set 'lora.r=[1,2'",
         via_cli("params", "presets/quickstart.yaml", "--set", "lora.r=[1,2"), REFUSED_CLI, ("lora.r", "malformed YAML")),
    Case("cli-set-mapping", C, "app.py params quickstart.yaml --set 'data.name={{author}}'",
         via_cli("params", "presets/quickstart.yaml", "--set", "data.name={{author}}"), REFUSED_CLI, ("data.name",)),
    Case("cli-set-tag", C, "app.py params quickstart.yaml --set 'lora.r=!!python/name:os.system'",
         via_cli("params", "presets/quickstart.yaml", "--set", "lora.r=!!python/name:os.system"), REFUSED_CLI,
         ("lora.r", "tags")),
    Case("cli-binary-job", C, "app.py params <random bytes>",
         via_cli("params", "{tmp}/job.yaml", prepare=lambda t: write(t / "job.yaml", bytes(range(256)) * 4)),
         REFUSED_CLI, ("job.yaml", "not UTF-8")),
    Case("cli-missing-data", C, "app.py data check <missing file>", via_cli("data", "check", "{tmp}/none.jsonl"),
         REFUSED_CLI, ("none.jsonl", "not found")),
    # data files
    Case("data-nan", D, "NaN as a JSONL value", via_data("d.jsonl", rows('{"instruction": "a", "output": NaN}')),
         REFUSED_ROW, ("d.jsonl line 1", "output is nan", "NaN or Infinity")),
    Case("data-infinity", D, "Infinity in a JSON array", via_data("d.json", '[\n{"instruction": "a", "output": "b"},\n'
                                                                         '{"instruction": "a", "output": Infinity}\n]'),
         REFUSED_ROW, ("d.json sample 2 (line 3)", "output is inf")),
    Case("data-minus-infinity", D, "-Infinity nested in a conversation",
         via_data("d.jsonl", rows('{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": -Infinity}]}')),
         REFUSED_ROW, ("line 1", "messages[1].content is -inf")),
    Case("data-surrogate", D, "a lone surrogate \\ud800 in an answer",
         via_data("d.jsonl", rows(GOOD_ROW, '{"instruction": "a", "output": "x\\ud800y"}')), REFUSED_ROW,
         ("d.jsonl line 2", "lone surrogate", "\\ud800 at character 2")),
    Case("data-surrogate-key", D, "a lone surrogate in a key",
         via_data("d.jsonl", rows('{"instruction": "a", "output": "b", "\\udc00": 1}')), REFUSED_ROW,
         ("line 1", "lone surrogate")),
    Case("data-deep-jsonl", D, "a JSONL row nested 100,000 deep", via_data("d.jsonl", DEEP_JSONL), REFUSED_ROW,
         ("d.jsonl line 1", "nested too deeply")),
    Case("data-deep-json", D, "a JSON array sample nested 100,000 deep",
         via_data("d.json", "[" + DEEP_JSONL.strip() + "]"), REFUSED_FILE, ("d.json line 1", "nested too deeply")),
    Case("data-nested-70", D, "a row nested 70 levels", via_data("d.jsonl", rows(
        '{"instruction": "a", "output": "b", "x": ' + "[" * 70 + "]" * 70 + "}")), REFUSED_ROW,
         ("line 1", "nested deeper than 64")),
    Case("data-huge-row", D, "a 3 MB JSONL row", via_data("d.jsonl", rows(GOOD_ROW, {"instruction": "a", "output": "x" * 3_000_000})),
         REFUSED_ROW, ("d.jsonl line 2", "3.0 MB", "at most 2 MB")),
    Case("data-huge-csv-row", D, "a 3 MB CSV row (in fields under CSV's own limit)",
         via_data("d.csv", "instruction,output," + ",".join(f"c{i}" for i in range(30)) + "\na,b," +
                  ",".join(["x" * 100_000] * 30) + "\n"), REFUSED_ROW, ("d.csv line 2", "at most 2 MB")),
    Case("data-huge-csv-field", D, "a CSV field of 200,000 characters", via_data("d.csv", "instruction,output\na," + "x" * 200_000 + "\n"),
         REFUSED_FILE, ("d.csv line", "bad CSV")),
    Case("data-invalid-json", D, "a broken JSONL line", via_data("d.jsonl", rows(GOOD_ROW, "{oops")), REFUSED_ROW,
         ("d.jsonl line 2", "invalid JSON")),
    Case("data-json-object", D, "a .json file holding one object", via_data("d.json", json.dumps(GOOD_ROW)), REFUSED_FILE,
         ("d.json", "expected a JSON array")),
    Case("data-row-list", D, "a JSONL row that is a list", via_data("d.jsonl", rows(GOOD_ROW, [1, 2])), REFUSED_ROW,
         ("line 2", "expected a JSON object")),
    Case("data-latin1", D, "a Latin-1 byte in a JSONL file",
         via_data("d.jsonl", b'{"instruction": "caf\xe9", "output": "b"}\n'), REFUSED_ROW, ("line 1", "not UTF-8")),
    Case("data-binary", D, "a binary file named .jsonl", via_data("d.jsonl", b"\x00\x01\x02" * 100), REFUSED_FILE,
         ("d.jsonl", "binary file")),
    Case("data-empty", D, "an empty file", via_data("d.jsonl", b""), REFUSED_FILE, ("d.jsonl", "empty")),
    Case("data-blank", D, "a JSONL file of blank lines", via_data("d.jsonl", "\n\n  \n"), REFUSED_FILE,
         ("d.jsonl", "no samples")),
    Case("data-xml", D, "an .xml file", via_data("d.xml", "<a/>"), REFUSED_FILE, ("d.xml", "unsupported file type")),
    Case("data-ranking", D, "preference pairs (chosen/rejected)",
         via_data("d.jsonl", rows({"instruction": "q", "chosen": "a", "rejected": "b"})), REFUSED_FILE,
         ("preference pairs",)),
    Case("data-no-output", D, "an alpaca row without output", via_data("d.jsonl", rows(GOOD_ROW, {"instruction": "q"})),
         REFUSED_ROW, ("line 2", "missing or empty field 'output'")),
    Case("data-role-order", D, "a conversation that starts with the assistant",
         via_data("d.jsonl", rows({"messages": [{"role": "assistant", "content": "a"}, {"role": "user", "content": "b"}]})),
         REFUSED_ROW, ("line 1", "wrong role order")),
    Case("data-unknown-role", D, "a turn with role 'wizard'",
         via_data("d.jsonl", rows({"messages": [{"role": "wizard", "content": "a"}, {"role": "assistant", "content": "b"}]})),
         REFUSED_ROW, ("line 1", "unknown role 'wizard'")),
    Case("data-image-part", D, "an image part in a message",
         via_data("d.jsonl", rows({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": "x"}]},
                                                {"role": "assistant", "content": "b"}]})),
         REFUSED_ROW, ("line 1", "only text parts")),
    Case("data-parquet-garbage", D, "a .parquet file that is text", via_data("d.parquet", "not parquet"), REFUSED_FILE,
         ("d.parquet", "not a readable parquet file")),
    Case("data-registry-folder", D, "a folder as the registry", registry_is_folder, REFUSED_FILE, ("is a folder",)),
    Case("data-registry-entry-text", D, "a registry entry that is text", via_data(
        "d.jsonl", rows(GOOD_ROW), registry={"mine": "d.jsonl"}, dataset="mine"), REFUSED_FILE,
         ("registry entry 'mine'", "must be an object")),
    Case("data-registry-file-int", D, "a registry file_name that is a number", via_data(
        "d.jsonl", rows(GOOD_ROW), registry={"mine": {"file_name": 7}}, dataset="mine"), REFUSED_FILE,
         ("registry entry 'mine'", "'file_name' must be text")),
    Case("data-registry-samples-text", D, "a registry num_samples of 'ten'", via_data(
        "d.jsonl", rows(GOOD_ROW), registry={"mine": {"file_name": "d.jsonl", "num_samples": "ten"}}, dataset="mine"),
         REFUSED_FILE, ("'num_samples' must be int",)),
    Case("data-registry-bad-json", D, "a registry that is not JSON", via_data(
        "d.jsonl", rows(GOOD_ROW), registry="{oops", dataset="mine"), REFUSED_FILE, ("dataset_info.json line 1", "invalid JSON")),
    Case("data-registry-deep", D, "a registry nested 100,000 deep", via_data(
        "d.jsonl", rows(GOOD_ROW), registry="[" * 100_000 + "]" * 100_000, dataset="mine"), REFUSED_FILE,
         ("dataset_info.json", "nested too deeply")),
    Case("data-registry-missing-file", D, "a registry entry whose file is gone", via_data(
        "d.jsonl", rows(GOOD_ROW), registry={"mine": {"file_name": "gone.jsonl"}}, dataset="mine"), REFUSED_FILE,
         ("mine", "gone.jsonl", "missing")),
    # model folders
    Case("model-no-config", M, "a folder without config.json", via_model(remove("config.json")), REFUSED_LAUNCH,
         ("model.path", "no config.json")),
    Case("model-is-file", M, "model.path names a file", via_launch(prepare=lambda ctx: {"model": {"path": str(ctx.model / "config.json")}}),
         REFUSED_LAUNCH, ("model.path", "is a file")),
    Case("model-missing", M, "a folder that does not exist", via_launch({"model": {"path": "/nonexistent/model"}}),
         REFUSED_LAUNCH, ("model.path", "not found")),
    Case("model-empty-path", M, "model.path empty", via_launch({"model": {"path": ""}}), REFUSED_LAUNCH,
         ("model.path", "no model given")),
    Case("model-config-not-json", M, "config.json that is not JSON",
         via_model(lambda f: write(f / "config.json", '{"model_type": "llama",}')), REFUSED_LAUNCH,
         ("model.path", "config.json line 1", "not valid JSON")),
    Case("model-config-list", M, "config.json holding a list", via_model(lambda f: write(f / "config.json", "[1]")),
         REFUSED_LAUNCH, ("model.path", "config.json must hold a JSON object")),
    Case("model-no-type", M, "config.json without model_type", via_model(json_edit("config.json", lambda d: d.pop("model_type") and None)),
         REFUSED_LAUNCH, ("model.path", "names no model_type")),
    Case("model-no-weights", M, "no weight files", via_model(remove("model.safetensors")), REFUSED_LAUNCH,
         ("model.path", "holds no weights")),
    Case("model-truncated", M, "model.safetensors cut short", via_model(truncate_weights), REFUSED_LAUNCH,
         ("model.path", "model.safetensors is truncated")),
    Case("model-garbled", M, "model.safetensors of random bytes",
         via_model(lambda f: write(f / "model.safetensors", os.urandom(5000))), REFUSED_LAUNCH,
         ("model.path", "model.safetensors is not a safetensors file")),
    Case("model-text-weights", M, "model.safetensors holding text",
         via_model(lambda f: write(f / "model.safetensors", "not a safetensors file")), REFUSED_LAUNCH,
         ("model.path", "model.safetensors is not a safetensors file")),
    Case("model-bad-offsets", M, "a safetensors header whose byte range does not match the shape",
         via_model(lambda f: write(f / "model.safetensors", safetensors_with_header(
             {"w": {"dtype": "F32", "shape": [4, 4], "data_offsets": [0, 8]}}, b"\0" * 8))), REFUSED_LAUNCH,
         ("model.path", "tensor 'w'", "does not match its shape")),
    Case("model-bad-dtype", M, "a safetensors header with dtype 'F99'",
         via_model(lambda f: write(f / "model.safetensors", safetensors_with_header(
             {"w": {"dtype": "F99", "shape": [1], "data_offsets": [0, 4]}}, b"\0" * 4))), REFUSED_LAUNCH,
         ("model.path", "no known dtype")),
    Case("model-missing-shard", M, "an index naming a shard that is missing", via_model(sharded(["model-00001-of-00002.safetensors"])),
         REFUSED_LAUNCH, ("model.path", "model-00001-of-00002.safetensors is missing")),
    Case("model-shard-outside", M, "an index naming ../../etc/passwd", via_model(sharded(["../../etc/passwd"])),
         REFUSED_LAUNCH, ("model.path", "outside the model folder")),
    Case("model-bin-garbage", M, "pytorch_model.bin that is not a checkpoint",
         via_model(lambda f: (remove("model.safetensors")(f), write(f / "pytorch_model.bin", b"PK\x03\x04 garbage"))),
         REFUSED_LAUNCH, ("model.path", "pytorch_model.bin")),
    Case("model-no-tokenizer", M, "no tokenizer files", via_model(remove("tokenizer.json")), REFUSED_LAUNCH,
         ("model.path", "has no tokenizer")),
    Case("model-no-template", M, "no chat template", via_model(without_template), NOTE,
         ("model.path", "no chat template", "fallback ChatML")),
    # jobs that parse but cannot start here
    Case("launch-eval-split-one", L, "eval_split 0.5 of a one-sample dataset",
         via_launch(prepare=lambda ctx: {"data": {"dataset": one_sample_file(ctx.tmp), "eval_split": 0.5, "max_samples": 0}}),
         REFUSED_LAUNCH, ("data.eval_split", "leaves no eval sample")),
    Case("launch-eval-split-subset", L, "eval_split 0.2 with max_samples 2",
         via_launch({"data": {"eval_split": 0.2, "max_samples": 2}}), REFUSED_LAUNCH, ("data.eval_split", "of 2 samples")),
    Case("launch-max-length", L, "max_length 16 with prompts longer than that",
         via_launch({"data": {"max_length": 16}}), REFUSED_LAUNCH, ("data.max_length", "no sample keeps")),
    Case("launch-fp16-cpu", L, "precision fp16 on a CPU", via_launch({"runtime": {"precision": "fp16", "device": "cpu"}}),
         REFUSED_LAUNCH, ("runtime.precision", "3x")),
    Case("launch-missing-data", L, "a dataset file that does not exist", via_launch({"data": {"dataset": "/none/d.jsonl"}}),
         REFUSED_LAUNCH, ("data.dataset", "not found")),
    Case("launch-registry-folder", L, "data.registry is a folder", via_launch(prepare=lambda ctx: {"data": {"registry": str(ctx.tmp)}}),
         REFUSED_LAUNCH, ("data.registry", "is a folder")),
    Case("launch-bad-row", L, "a dataset with a NaN row",
         via_launch(prepare=lambda ctx: (write(ctx.tmp / "n.jsonl", rows(GOOD_ROW, '{"instruction": "a", "output": NaN}')),
                                         {"data": {"dataset": str(ctx.tmp / "n.jsonl"), "max_samples": 0}})[1]),
         REFUSED_LAUNCH, ("data.dataset", "n.jsonl line 2", "NaN")),
    Case("launch-paged-cpu", L, "QLoRA's paged optimiser on a CPU",
         via_launch({"method": "qlora", "quant": {"paged_optimizer": True}, "runtime": {"device": "cpu"}}), REFUSED_LAUNCH,
         ("quant.paged_optimizer", "CUDA")),
    # the Train tab's form (quickstart preset loaded, one box changed)
    Case("form-empty-rank", F, "lora.r box emptied", via_form({"lora.r": None}), REFUSED_PARSE, ("lora.r", "is empty")),
    Case("form-empty-rate", F, "learning rate box emptied", via_form({"train.learning_rate": None}), REFUSED_PARSE,
         ("train.learning_rate", "is empty")),
    Case("form-empty-epochs", F, "epochs box emptied", via_form({"train.epochs": None}), REFUSED_PARSE,
         ("train.epochs", "is empty")),
    Case("form-empty-length", F, "max_length box emptied", via_form({"data.max_length": None}), REFUSED_PARSE,
         ("data.max_length", "is empty")),
    Case("form-steps-1e21", F, "max_steps 1e21 typed", via_form({"train.max_steps": 1e21}), REFUSED_PARSE,
         ("train.max_steps", "maximum")),
    Case("form-seed-negative", F, "seed -1", via_form({"train.seed": -1}), REFUSED_PARSE, ("train.seed", "minimum")),
    Case("form-no-targets", F, "every target layer unticked", via_form({"lora.targets": []}), REFUSED_PARSE,
         ("lora.targets", "at least one")),
    Case("form-bad-choice", F, "batching 'nosuch' sent through the API", via_form({"data.batching": "nosuch"}),
         REFUSED_PARSE, ("data.batching", "not one of")),
    Case("form-text-number", F, "learning rate 'abc' sent through the API", via_form({"train.learning_rate": "abc"}),
         REFUSED_PARSE, ("train.learning_rate", "expected a number")),
    Case("form-dropout-high", F, "dropout 5", via_form({"lora.dropout": 5.0}), REFUSED_PARSE, ("lora.dropout", "maximum")),
    Case("form-checkbox-none", F, "train_on_prompt None sent through the API", via_form({"data.train_on_prompt": None}),
         REFUSED_PARSE, ("data.train_on_prompt", "is empty")),
    Case("form-empty-model", F, "model box emptied", via_form({"model.path": ""}, launch=True), REFUSED_LAUNCH,
         ("model.path", "no model given")),
    Case("form-fp16-cpu", F, "precision fp16 picked on a CPU machine", via_form({"runtime.precision": "fp16"}, launch=True),
         REFUSED_LAUNCH, ("runtime.precision", "fp16 on a CPU")),
]

OUTCOMES: list[tuple[Case, str, str]] = []


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_refused_naming_its_place(case: Case, tiny_model_dir, tmp_path, monkeypatch):
    if case.outcome == REFUSED_LAUNCH and "fp16" in case.id:
        import torch

        if torch.cuda.is_available():
            pytest.skip("fp16 is refused only on a CPU")
    outcome, message = case.run(Ctx(tmp_path, tiny_model_dir, monkeypatch))
    OUTCOMES.append((case, outcome, message))
    assert outcome == case.outcome, f"{case.given}: {outcome}\n{message[:3000]}"
    for place in case.places:
        assert place in message, f"{case.given}: {place!r} not in:\n{message[:3000]}"
    assert "Traceback" not in message
    assert len(message) < 5000  # bounded, whatever the input's size


def test_there_are_more_than_a_hundred_cases():
    assert len(CASES) > 100 and len({c.id for c in CASES}) == len(CASES)


def test_every_place_is_covered():
    assert {c.where for c in CASES} == {S, Y, C, D, M, L, F}


@pytest.fixture(scope="module", autouse=True)
def write_table():
    yield
    target = os.environ.get("BAD_INPUTS_TABLE")
    if not target or not OUTCOMES:
        return
    lines = ["| # | input | where | outcome | message (the line naming the place) |", "|---|---|---|---|---|"]
    for number, (case, outcome, message) in enumerate(OUTCOMES, start=1):
        lines_of = message.strip().splitlines() or [""]
        first = next((line for line in lines_of if case.places[0] in line), lines_of[0])  # the line naming the place
        first = first.replace(str(Path(tempfile.gettempdir())), "/tmp")
        first = re.sub(r"/tmp/pytest-of-[^/\s]+/pytest-\d+/[^/\s]+", "<tmp>", first)
        first = first if len(first) <= 160 else first[:160] + "…"
        cell = lambda text: text.replace("|", "\\|").replace("\n", " ")  # noqa: E731
        lines.append(f"| {number} | {cell(case.given)} | {case.where} | {outcome} | {cell(first)} |")
    Path(target).write_text("\n".join(lines) + "\n", encoding="utf-8")
