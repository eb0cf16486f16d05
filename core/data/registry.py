"""The dataset registry, in LLaMA-Factory's dataset_info.json layout.

Each entry names a file relative to the registry's folder and how to read it:
{"identity": {"file_name": "identity.json", "formatting": "alpaca"}}.
A dataset may also be given as a plain path to a file.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from core.paths import DATA_DIR


class DatasetError(ValueError):
    """The dataset cannot be used; the message names the dataset, file and line where known."""


@dataclass
class DatasetEntry:
    name: str
    path: Path
    formatting: str = "alpaca"
    columns: dict = field(default_factory=dict)
    ranking: bool = False


def registry_path(registry: str = "") -> Path:
    return Path(registry).expanduser() if registry else DATA_DIR / "dataset_info.json"


def read_registry(registry: str = "") -> dict[str, dict]:
    path = registry_path(registry)
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except FileNotFoundError:
        raise DatasetError(f"dataset registry not found: {path}") from None
    except json.JSONDecodeError as err:
        raise DatasetError(f"{path} line {err.lineno}: invalid JSON ({err.msg})") from None


def find_dataset(name: str, registry: str = "") -> DatasetEntry:
    """Resolve a registry name or a file path into a DatasetEntry."""
    as_path = Path(name).expanduser()
    if as_path.suffix and as_path.is_file():
        return DatasetEntry(name=as_path.stem, path=as_path, formatting="auto")
    entries = read_registry(registry)
    if name not in entries:
        known = ", ".join(sorted(entries)) or "none"
        raise DatasetError(f"dataset '{name}' is neither a file nor in the registry {registry_path(registry)} (known: {known})")
    info = entries[name]
    if "file_name" not in info:
        raise DatasetError(f"dataset '{name}' has no local file_name in the registry (hub and script datasets need a network)")
    path = registry_path(registry).parent / info["file_name"]
    if not path.exists():
        raise DatasetError(f"dataset '{name}' is unavailable: its file {path} is missing")
    return DatasetEntry(
        name=name,
        path=path,
        formatting=info.get("formatting", "alpaca"),
        columns=info.get("columns", {}),
        ranking=bool(info.get("ranking", False)),
    )
