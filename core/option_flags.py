"""Command-line flags from an options dataclass: one flag per `opt()` field, with its help, allowed values
and default taken from the declaration. Values are checked by `build_options`, so a bad one is refused
naming its flag, in the same words the UI uses."""
from __future__ import annotations

import argparse

from core.options import OptionsError, allowed_values, build_options, declared_fields, defaults


def flag_name(option: str) -> str:
    return "--" + option.replace("_", "-")


def _help(f, default) -> str:
    notes = [allowed_values(f)] if allowed_values(f) else []
    if f.metadata.get("multi"):
        notes.append("repeatable")
    elif default not in ("", None, False, []):
        notes.append(f"default {default}")
    text = f.metadata["help"] + (f" ({'; '.join(notes)})" if notes else "")
    return text.replace("%", "%%")  # argparse formats help with %


def add_option_flags(parser: argparse.ArgumentParser, cls, positional: tuple[str, ...] = ()) -> None:
    """Add a flag per declared option of `cls` (`positional` ones become positional arguments).

    Every flag defaults to None, meaning "not given": the declaration's default then applies.
    """
    default_of = defaults(cls)
    for f in declared_fields(cls):
        help_text = _help(f, default_of[f.name])
        if f.name in positional:
            parser.add_argument(f.name, help=help_text)
        elif f.type == "bool":
            parser.add_argument(flag_name(f.name), dest=f.name, action="store_true", default=None, help=help_text)
        elif f.metadata.get("multi"):
            parser.add_argument(flag_name(f.name), dest=f.name, action="append", default=None,
                                metavar=f.name.upper(), help=help_text)
        else:
            parser.add_argument(flag_name(f.name), dest=f.name, default=None, metavar=f.name.upper(), help=help_text)


def options_from_flags(cls, args: argparse.Namespace, positional: tuple[str, ...] = ()):
    """The checked options from parsed flags; OptionsError's problems name the flag (or the positional)."""
    values = {f.name: getattr(args, f.name, None) for f in declared_fields(cls)}
    try:
        return build_options(cls, values)
    except OptionsError as err:
        raise OptionsError([(name if name in positional else flag_name(name), message)
                            for name, message in err.problems]) from None
