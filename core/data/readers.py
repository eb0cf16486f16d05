"""Read dataset files row by row, keeping each row's location (line or row number).

Supported files: .json (an array of objects), .jsonl, .csv, .parquet and .txt
(one plain-text sample per non-empty line). A row that cannot be read is kept
as a `Row` with a `problem`, so validation can list every bad row at once and
loading can refuse the file naming each of them.

`RowSource` indexes a file once (byte offsets of lines for .jsonl/.txt, parsed
rows for the formats that must be parsed whole) so a preview page reads only
the rows it shows.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from core.data.limits import MAX_ROW_BYTES, row_size_problem, rows_problem, value_problem
from core.data.registry import DatasetError

SUFFIXES = (".json", ".jsonl", ".csv", ".parquet", ".txt")
SNIPPET = 60  # characters of a bad line quoted in a message; a 10 MB line must not flood the report


@dataclass
class Row:
    where: str  # "line 12" or "row 12": what the user looks for in an editor or a sheet
    value: dict | None = None
    problem: str | None = None


def _line_number(data: bytes, byte_offset: int) -> int:
    return data.count(b"\n", 0, byte_offset) + 1


def _decode(data: bytes, path: Path) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = _line_number(data, err.start)
        raise DatasetError(f"{path} line {line}: not UTF-8 text (byte 0x{data[err.start]:02x}); "
                           "save the file as UTF-8") from None


def _parse_line(raw: bytes, number: int, text_file: bool) -> Row | None:
    """One line of a .jsonl or .txt file as a Row; None for a blank line."""
    where = f"line {number}"
    if not raw.strip():
        return None
    too_big = row_size_problem(len(raw))
    if too_big:  # not decoded or parsed at all: that is where a huge line costs time and memory
        return Row(where, problem=too_big)
    try:
        line = raw.decode("utf-8-sig" if number == 1 else "utf-8").rstrip("\r\n")
    except UnicodeDecodeError as err:
        return Row(where, problem=f"not UTF-8 text (byte 0x{raw[err.start]:02x} at column {err.start + 1})")
    if not line.strip():
        return None
    if text_file:
        return Row(where, {"text": line})
    try:
        value = json.loads(line)
    except json.JSONDecodeError as err:
        shown = line[:SNIPPET] + ("…" if len(line) > SNIPPET else "")
        return Row(where, problem=f"invalid JSON ({err.msg} at column {err.colno}): {shown!r}")
    except RecursionError:
        return Row(where, problem=NESTED_TOO_DEEP)
    return _object_row(where, value)


NESTED_TOO_DEEP = "nested too deeply to read (thousands of levels of [ or {)"


def _object_row(where: str, value, json_text: bool = True) -> Row:
    """A parsed row as a Row: a JSON object within the limits of core/data/limits.py, else its problem.
    `json_text` rows may not hold NaN (JSON has none); a parquet or hub table's float column may."""
    if not isinstance(value, dict):
        return Row(where, problem=f"expected a JSON object, got {type(value).__name__}")
    problem = value_problem(value, nan_allowed=not json_text)
    return Row(where, problem=problem) if problem else Row(where, value)


def _json_array_rows(path: Path) -> list[Row]:
    """Parse a JSON array element by element, so each sample knows the line it starts on."""
    data = path.read_bytes()
    text = _decode(data, path)
    decoder = json.JSONDecoder()
    rows: list[Row] = []
    length, line, last = len(text), 1, 0

    def skip(i: int) -> int:
        while i < length and text[i] in " \t\r\n":
            i += 1
        return i

    def fail(i: int, msg: str):
        ln = text.count("\n", 0, i) + 1
        raise DatasetError(f"{path} line {ln}: invalid JSON ({msg})")

    i = skip(0)
    if i == length:
        raise DatasetError(f"{path}: the file is empty")
    if text[i] != "[":
        try:
            kind = type(json.loads(text)).__name__
        except json.JSONDecodeError as err:
            fail(err.pos, err.msg)
        raise DatasetError(f"{path}: expected a JSON array of samples, got a {kind}")
    i = skip(i + 1)
    if i < length and text[i] == "]":
        return rows
    while True:
        line += text.count("\n", last, i)
        last = i
        try:
            value, end = decoder.raw_decode(text, i)
        except json.JSONDecodeError as err:
            fail(err.pos, err.msg)
        except RecursionError:
            fail(i, NESTED_TOO_DEEP)
        where = f"sample {len(rows) + 1} (line {line})"
        too_big = row_size_problem(len(text[i:end].encode("utf-8")) if end - i > MAX_ROW_BYTES // 4 else end - i)
        rows.append(Row(where, problem=too_big) if too_big else _object_row(where, value))
        i = skip(end)
        if i < length and text[i] == ",":
            i = skip(i + 1)
        elif i < length and text[i] == "]":
            if skip(i + 1) != length:
                fail(skip(i + 1), "extra data after the array")
            return rows
        else:
            fail(i, "expected ',' or ']' after a sample")


def _csv_rows(path: Path) -> list[Row]:
    import csv
    import io

    text = _decode(path.read_bytes(), path)
    if not text.strip():
        raise DatasetError(f"{path}: the file is empty")
    reader = csv.DictReader(io.StringIO(text, newline=""))
    rows = []
    try:
        for record in reader:
            value = {k: v for k, v in record.items() if k is not None}
            too_big = row_size_problem(sum(len(v) for v in value.values() if isinstance(v, str)))
            rows.append(Row(f"line {reader.line_num}", problem=too_big) if too_big else Row(f"line {reader.line_num}", value))
    except csv.Error as err:
        raise DatasetError(f"{path} line {reader.line_num}: bad CSV ({err})") from None
    return rows


def _parquet_rows(path: Path) -> list[Row]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as err:  # pyarrow raises several types for a corrupt file
        raise DatasetError(f"{path}: not a readable parquet file ({err})") from None
    return [_object_row(f"row {n}", value, json_text=False) for n, value in enumerate(table.to_pylist(), start=1)]


class RowSource:
    """A dataset file's rows, indexed once; `page()` reads only what they return."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        suffix = self.path.suffix.lower()
        if suffix not in SUFFIXES:
            raise DatasetError(f"{self.path}: unsupported file type '{suffix}' (use {', '.join(SUFFIXES)})")
        if not self.path.is_file():
            raise DatasetError(f"{self.path}: file not found")
        if self.path.stat().st_size == 0:
            raise DatasetError(f"{self.path}: the file is empty")
        if suffix != ".parquet":
            with open(self.path, "rb") as fh:
                head = fh.read(8192)
            nul = head.find(b"\x00")
            if nul >= 0:  # text never holds NUL bytes; a model file or archive named .json does
                raise DatasetError(f"{self.path}: a binary file, not text (NUL byte at offset {nul})")
        self.text_file = suffix == ".txt"
        self._offsets: list[tuple[int, int]] = []  # (byte offset, line number) of each non-blank line
        self._rows: list[Row] | None = None
        if suffix in (".jsonl", ".txt"):
            self._index_lines()
        elif suffix == ".json":
            self._rows = _json_array_rows(self.path)
        elif suffix == ".csv":
            self._rows = _csv_rows(self.path)
        else:
            self._rows = _parquet_rows(self.path)
        if len(self) == 0:
            raise DatasetError(f"{self.path}: holds no samples")
        too_many = rows_problem(len(self))
        if too_many:
            raise DatasetError(f"{self.path}: {too_many}")

    def _index_lines(self) -> None:
        offset = 0
        with open(self.path, "rb") as fh:
            for number, raw in enumerate(fh, start=1):
                if raw.strip():
                    self._offsets.append((offset, number))
                offset += len(raw)

    def __len__(self) -> int:
        return len(self._rows) if self._rows is not None else len(self._offsets)

    def page(self, start: int, count: int) -> list[Row]:
        if self._rows is not None:
            return self._rows[start : start + count]
        out = []
        with open(self.path, "rb") as fh:
            for offset, number in self._offsets[start : start + count]:
                fh.seek(offset)
                out.append(_parse_line(fh.readline(), number, self.text_file))
        return out

    def __iter__(self):
        if self._rows is not None:
            yield from self._rows
            return
        with open(self.path, "rb") as fh:  # one sequential pass, no seeks
            for number, raw in enumerate(fh, start=1):
                row = _parse_line(raw, number, self.text_file)
                if row is not None:
                    yield row
