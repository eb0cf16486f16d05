"""`app.py export`'s flags come from ExportOptions: the same names, defaults, allowed values and help."""
from __future__ import annotations

import pytest

from core.cli import EXPORT_POSITIONAL, build_parser
from core.export.options import ExportOptions
from core.option_flags import options_from_flags
from core.options import OptionsError, declared_fields


def export_args(*argv):
    return build_parser().parse_args(["export", *argv])


def export_parser():
    return build_parser()._subparsers._group_actions[0].choices["export"]


def test_flag_names_are_kept():
    flags = {a.dest: a.option_strings for a in export_parser()._actions}
    assert flags["out"] == ["--out"] and flags["shard_size"] == ["--shard-size"] and flags["dtype"] == ["--dtype"]
    assert flags["gguf"] == ["--gguf"] and flags["ollama"] == ["--ollama"] and flags["system"] == ["--system"]
    assert flags["run"] == []  # positional


def test_left_out_flags_take_the_declared_defaults():
    options = options_from_flags(ExportOptions, export_args("RUN"), EXPORT_POSITIONAL)
    assert options == ExportOptions(run="RUN")


def test_given_flags_are_parsed_and_repeatable():
    args = export_args("RUN", "--out", "o", "--shard-size", "500MB", "--dtype", "bfloat16", "--gguf", "f16",
                       "--gguf", "q8_0", "--ollama", "--system", "Be brief.")
    options = options_from_flags(ExportOptions, args, EXPORT_POSITIONAL)
    assert (options.out, options.shard_size, options.dtype, options.gguf, options.ollama, options.system) == \
        ("o", "500MB", "bfloat16", ["f16", "q8_0"], True, "Be brief.")


def test_a_bad_value_names_its_flag():
    with pytest.raises(OptionsError) as caught:
        options_from_flags(ExportOptions, export_args("RUN", "--dtype", "float8"), EXPORT_POSITIONAL)
    assert caught.value.problems == [("--dtype", "'float8' is not one of: float32, bfloat16, float16")]


def test_help_carries_the_declaration():
    text = " ".join(export_parser().format_help().split())
    for f in declared_fields(ExportOptions):
        assert " ".join(f.metadata["help"].split()) in text
    assert "default 2GB" in text and "one of: float32, bfloat16, float16" in text
