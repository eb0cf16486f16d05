"""Files uploaded in the UI land in the workspace, with their own registry for column mappings.

<workspace>/data/<file>               the uploaded file, copied whole (temp + rename)
<workspace>/data/dataset_info.json    entries the user saved with a format and column mapping
"""
from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

from core.data.readers import SUFFIXES
from core.data.registry import DatasetError
from core.runs.folder import write_atomic


def uploads_dir(workspace: Path) -> Path:
    return Path(workspace) / "data"


def workspace_registry(workspace: Path) -> Path:
    return uploads_dir(workspace) / "dataset_info.json"


def store_upload(source: str | Path, workspace: Path, original_name: str | None = None) -> Path:
    """Copy an uploaded file into the workspace under a safe, unused name; return the new path."""
    source = Path(source)
    name = original_name or source.name
    suffix = Path(name).suffix.lower()
    if suffix not in SUFFIXES:
        raise DatasetError(f"{name}: unsupported file type '{suffix}' (use {', '.join(SUFFIXES)})")
    stem = re.sub(r"[^\w.-]+", "_", Path(name).stem).strip("._") or "upload"
    folder = uploads_dir(workspace)
    folder.mkdir(parents=True, exist_ok=True)
    target, number = folder / f"{stem}{suffix}", 1
    while target.exists():
        number += 1
        target = folder / f"{stem}-{number}{suffix}"
    tmp = folder / f".{target.name}.tmp"
    shutil.copyfile(source, tmp)
    os.replace(tmp, target)
    return target


def parse_columns(text: str) -> dict[str, str]:
    """'prompt=question, response=answer' -> {"prompt": "question", "response": "answer"}."""
    columns = {}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        if "=" not in part:
            raise DatasetError(f"column mapping '{part.strip()}' must look like role=column, e.g. prompt=question")
        key, value = (p.strip() for p in part.split("=", 1))
        columns[key] = value
    return columns


def save_mapping(workspace: Path, name: str, path: Path, formatting: str, columns: dict) -> Path:
    """Register a file with its format and columns in the workspace registry; returns the registry path."""
    registry = workspace_registry(workspace)
    registry.parent.mkdir(parents=True, exist_ok=True)
    entries = json.loads(registry.read_text(encoding="utf-8")) if registry.is_file() else {}
    entries[name] = {"file_name": str(Path(path).resolve()), "formatting": formatting, "columns": columns}
    write_atomic(registry, json.dumps(entries, ensure_ascii=False, indent=2))
    return registry
