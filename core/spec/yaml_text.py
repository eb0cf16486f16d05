"""Read YAML a person wrote (a job file, a --set value) within limits, or say plainly why not.

PyYAML's safe loader builds no Python objects from tags, but it still accepts what a job never needs
and a careless or hostile file can abuse:
- aliases: a 316-byte "billion laughs" file expands to gigabytes when the data is walked or printed
  (8.5 s, 814 MB and a 25 MB error message before these limits);
- deep nesting, which ends in a RecursionError inside the parser;
- duplicate keys, of which YAML silently keeps the last, so `lr: 1e-4` further up is quietly lost;
- files of any size.
Every refusal names the source and, where PyYAML knows it, the line and column.
"""
from __future__ import annotations

from typing import Any

import yaml
from yaml.nodes import MappingNode, SequenceNode

MAX_BYTES = 1_000_000  # a whole job file is a few kilobytes
MAX_ALIASES = 50  # a job needs none; a few anchors for repeated lists are still fine
MAX_NODES = 100_000  # values after aliases are expanded
MAX_DEPTH = 32  # a job is three levels deep
MESSAGE_CHARS = 300  # the most of PyYAML's own wording quoted in a refusal

MERGE_TAG = "tag:yaml.org,2002:merge"


class YamlProblem(ValueError):
    """The text is not YAML this program reads; the message names the source, line and column."""


class _LimitedLoader(yaml.SafeLoader):
    """The safe loader, counting aliases and depth while it composes, and refusing duplicate keys."""

    def __init__(self, stream):
        super().__init__(stream)
        self.aliases = 0
        self.depth = 0

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            self.aliases += 1
            if self.aliases > MAX_ALIASES:
                raise _Refused(f"more than {MAX_ALIASES} aliases (*name)", self.peek_event().start_mark)
            return super().compose_node(parent, index)
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                raise _Refused(f"nested deeper than {MAX_DEPTH} levels", self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def construct_mapping(self, node, deep=False):
        if isinstance(node, MappingNode):
            seen: dict[Any, Any] = {}
            for key_node, _ in node.value:
                if key_node.tag == MERGE_TAG:
                    continue  # `<<: *base` then `key: x` overrides on purpose; that is not a duplicate
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.setdefault(key, key_node.start_mark)
                except TypeError:
                    continue  # an unhashable key; the base class reports it with its position
                if first is not key_node.start_mark:
                    raise _Refused(f"duplicate key '{_cut(str(key), 60)}' (first given at line {first.line + 1})",
                                   key_node.start_mark)
        return super().construct_mapping(node, deep)


class _Refused(Exception):
    def __init__(self, problem: str, mark):
        super().__init__(problem)
        self.problem, self.mark = problem, mark


def _cut(text: str, limit: int = MESSAGE_CHARS) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


def _where(mark) -> str:
    return f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""


def expanded_size(node, limit: int = MAX_NODES) -> int:
    """How many values the document holds once every alias is expanded, counted without expanding it
    (each node's size is computed once); stops counting past `limit`."""
    sizes: dict[int, int] = {}

    def size(n) -> int:
        if id(n) in sizes:
            return sizes[id(n)]
        total = 1
        if isinstance(n, SequenceNode):
            children = n.value
        elif isinstance(n, MappingNode):
            children = [c for pair in n.value for c in pair]
        else:
            children = []
        for child in children:
            total += size(child)
            if total > limit:
                break
        sizes[id(n)] = total
        return total

    return size(node)


def load_yaml(text: str, source: str = "YAML") -> Any:
    """The data in `text`; YamlProblem when it is too big, malformed, aliased too much or repeats a key."""
    if len(text) > MAX_BYTES:
        raise YamlProblem(f"{source} is {len(text):,} characters long; at most {MAX_BYTES:,} are read")
    loader = None
    try:
        loader = _LimitedLoader(text)  # its reader refuses control characters (NUL) right here
        node = loader.get_single_node()
        if node is None:
            return None
        if expanded_size(node) > MAX_NODES:
            raise _Refused(f"its aliases expand to more than {MAX_NODES:,} values", node.start_mark)
        return loader.construct_document(node)
    except _Refused as err:
        raise YamlProblem(f"{source}{_where(err.mark)}: {err.problem}") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        problem = getattr(err, "problem", None) or str(err)
        if "could not determine a constructor for the tag" in problem:
            problem = "tags such as !!python/object are not allowed; write plain values"
        raise YamlProblem(f"malformed YAML in {source}{_where(mark)}: {_cut(problem)}") from None
    except (ValueError, OverflowError) as err:  # e.g. an integer of 5,000 digits
        problem = "a number has too many digits" if "digits" in str(err) else _cut(str(err))
        raise YamlProblem(f"{source}: a value cannot be read ({problem})") from None
    except RecursionError:
        raise YamlProblem(f"{source}: nested too deeply to read") from None
    finally:
        if loader is not None:
            loader.dispose()


def is_plain(value: Any) -> bool:
    """A scalar (text, number, true/false, empty), or a list of scalars: what one field can hold."""
    scalar = (str, int, float, bool, type(None))
    if isinstance(value, list):
        return all(isinstance(v, scalar) for v in value)
    return isinstance(value, scalar) or _is_date(value)


def _is_date(value) -> bool:
    import datetime

    return isinstance(value, (datetime.date, datetime.datetime))
