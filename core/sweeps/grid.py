"""Grid lines and ties, and the combinations they make.

A grid line names one field and its values: `lora.r=4,8,16`, `method=lora,qlora`. The combinations are
every choice of one value per line, the first line varying slowest (so `--grid lora.r=4,8 --grid
train.epochs=1,3` runs r4/e1, r4/e3, r8/e1, r8/e3, in that order).

A tie sets a field from the others in each combination: `lora.alpha=2*lora.r`. Its expression is read by a
small arithmetic reader (numbers, field names, + - * / and brackets) on Python's parse tree; nothing in it is
ever executed, so a name that is not a field or any other construct is refused, naming the tie.
"""
from __future__ import annotations

import ast
import itertools
from dataclasses import dataclass, field
from typing import Any

import yaml


class SweepError(ValueError):
    """A sweep that cannot be queued; `problems` is a list of (where, message), where names the field,
    grid line, tie or combination at fault."""

    def __init__(self, problems: list[tuple[str, str]]):
        self.problems = problems
        super().__init__("\n".join(f"{where}: {msg}" if where else msg for where, msg in problems))


def known_field(dotted: str) -> str | None:
    """Why `dotted` is not a job field (None when it is one)."""
    from core.spec.schema import section_types, spec_fields
    from core.spec.values import suggest

    if dotted == "method":
        return None
    section, _, key = dotted.partition(".")
    types = section_types()
    if section not in types:
        return "unknown section" + suggest(section, list(types) + ["method"])
    names = [f.name for f in spec_fields(types[section])]
    if key not in names:
        return "unknown field" + suggest(key, names)
    return None


def _split_line(line: str, what: str) -> tuple[str, str]:
    name, sep, rest = str(line).partition("=")
    name = name.strip()
    if not sep or not name or not rest.strip():
        raise SweepError([(str(line).strip() or what, f"a {what} must look like section.key=" +
                           ("4,8,16" if what == "grid line" else "2*lora.r"))])
    return name, rest.strip()


def parse_grid_line(line: str) -> tuple[str, list]:
    """'lora.r=4,8,16' -> ('lora.r', [4, 8, 16]); values are read as YAML scalars, like --set."""
    name, rest = _split_line(line, "grid line")
    values = [yaml.safe_load(v.strip()) for v in rest.split(",") if v.strip()]
    return name, values


def parse_tie_line(line: str) -> tuple[str, str]:
    return _split_line(line, "tie")


# --- the arithmetic of ties ---------------------------------------------------------------------------------

_OPERATORS = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b,
              ast.Mult: lambda a, b: a * b, ast.Div: lambda a, b: a / b}


def _dotted(node: ast.AST) -> str | None:
    """'lora.r' for the tree of `lora.r`, 'method' for a bare name; None for anything else."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        head = _dotted(node.value)
        return f"{head}.{node.attr}" if head else None
    return None


def tie_names(expression: str) -> list[str]:
    """The field names an expression reads; raises ValueError on anything but the allowed arithmetic."""
    names: list[str] = []

    def walk(node: ast.AST) -> None:
        if isinstance(node, ast.Expression):
            walk(node.body)
        elif isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
            walk(node.left)
            walk(node.right)
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.UAdd, ast.USub)):
            walk(node.operand)
        elif isinstance(node, ast.Constant) and type(node.value) in (int, float):
            pass
        elif (name := _dotted(node)) is not None:
            names.append(name)
        else:
            raise ValueError(f"only numbers, field names, + - * / and brackets are allowed, not "
                             f"{ast.unparse(node)!r}")

    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError:
        raise ValueError(f"{expression!r} is not an arithmetic expression") from None
    walk(tree)
    return names


def evaluate_tie(expression: str, value_of) -> float | int:
    """The expression's value, reading each field name through `value_of(dotted)`."""
    def calc(node: ast.AST):
        if isinstance(node, ast.Expression):
            return calc(node.body)
        if isinstance(node, ast.BinOp):
            left, right = calc(node.left), calc(node.right)
            for side in (left, right):
                if isinstance(side, bool) or not isinstance(side, (int, float)):
                    raise ValueError(f"{ast.unparse(node)!r} needs numbers, got {side!r}")
            if isinstance(node.op, ast.Div) and right == 0:
                raise ValueError(f"{ast.unparse(node)!r} divides by zero")
            return _OPERATORS[type(node.op)](left, right)
        if isinstance(node, ast.UnaryOp):
            value = calc(node.operand)
            return -value if isinstance(node.op, ast.USub) else value
        if isinstance(node, ast.Constant):
            return node.value
        return value_of(_dotted(node))

    tie_names(expression)  # refuses anything outside the arithmetic before any of it is computed
    result = calc(ast.parse(expression.strip(), mode="eval"))
    return int(result) if isinstance(result, float) and result.is_integer() else result


# --- the grid -----------------------------------------------------------------------------------------------

@dataclass
class Grid:
    lines: dict[str, list] = field(default_factory=dict)   # field -> values, in the order given
    ties: dict[str, str] = field(default_factory=dict)     # field -> expression

    @classmethod
    def from_lines(cls, grid_lines: list[str], tie_lines: list[str] | None = None) -> Grid:
        grid = cls()
        for line in grid_lines:
            name, values = parse_grid_line(line)
            grid.lines[name] = values  # a later line for the same field replaces the earlier one
        for line in tie_lines or []:
            name, expression = parse_tie_line(line)
            grid.ties[name] = expression
        return grid

    def merged(self, other: Grid) -> Grid:
        """This grid with `other`'s lines and ties added (replacing those of the same field)."""
        return Grid({**self.lines, **other.lines}, {**self.ties, **other.ties})

    def problems(self) -> list[tuple[str, str]]:
        """Everything wrong with the grid itself, before any combination is built."""
        found = []
        if not self.lines:
            found.append(("grid", "a sweep needs at least one grid line, e.g. lora.r=4,8,16"))
        for name, values in self.lines.items():
            if (why := known_field(name)) is not None:
                found.append((name, why))
            elif not values:
                found.append((name, "the grid line lists no values"))
            elif len(set(map(repr, values))) != len(values):
                found.append((name, "the grid line lists a value twice"))
        for name, expression in self.ties.items():
            where = f"tie {name}"
            if (why := known_field(name)) is not None:
                found.append((where, why))
                continue
            if name in self.lines:
                found.append((where, "the field is also a grid line; it can be swept or tied, not both"))
            try:
                used = tie_names(expression)
            except ValueError as err:
                found.append((where, str(err)))
                continue
            for used_name in used:
                if (why := known_field(used_name)) is not None:
                    found.append((where, f"{used_name}: {why}"))
                elif used_name in self.ties:
                    found.append((where, f"{used_name} is itself tied; tie to grid fields or fixed ones"))
        return found

    def combinations(self) -> list[dict[str, Any]]:
        """One {field: value} per combination of the grid lines (ties not yet applied)."""
        names = list(self.lines)
        return [dict(zip(names, values)) for values in itertools.product(*self.lines.values())]

    def to_json(self) -> dict:
        return {"grid": self.lines, "ties": self.ties}
