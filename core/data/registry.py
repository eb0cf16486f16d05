"""The dataset registry, in LLaMA-Factory's dataset_info.json layout.

Each entry names a file relative to the registry's folder and how to read it:
{"identity": {"file_name": "identity.json", "formatting": "alpaca"}}.
Keys read here: file_name, hf_hub_url, formatting (alpaca, sharegpt, openai, and
our own prompt_completion, text, auto), columns, tags (ShareGPT role names),
ranking, num_samples, split. A dataset may also be given as a plain file path or
a hub id; several may be mixed by separating them with commas.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from core.paths import DATA_DIR

if TYPE_CHECKING:
    from core.safety.access import AccessPolicy

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class DatasetError(ValueError):
    """The dataset cannot be used; the message names the dataset, file and line where known."""


@dataclass
class DatasetEntry:
    name: str
    path: Path | None = None
    formatting: str = "alpaca"
    columns: dict = field(default_factory=dict)
    tags: dict = field(default_factory=dict)
    ranking: bool = False
    num_samples: int = 0
    hub_id: str = ""
    split: str = "train"


def registry_path(registry: str = "") -> Path:
    return Path(registry).expanduser() if registry else DATA_DIR / "dataset_info.json"


def refuse_outside(policy: AccessPolicy | None, path: Path, what: str) -> None:
    """DatasetError when `policy` forbids reading `path`; decided before the file is opened."""
    refusal = policy.read_refusal(path, what) if policy is not None else None
    if refusal:
        raise DatasetError(refusal)


def read_registry(registry: str = "", policy: AccessPolicy | None = None) -> dict[str, dict]:
    path = registry_path(registry)
    refuse_outside(policy, path, "dataset registry")
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except FileNotFoundError:
        raise DatasetError(f"dataset registry not found: {path}") from None
    except IsADirectoryError:
        raise DatasetError(f"dataset registry {path} is a folder; give its dataset_info.json file") from None
    except UnicodeDecodeError:
        raise DatasetError(f"dataset registry {path} is not UTF-8 text") from None
    except json.JSONDecodeError as err:
        raise DatasetError(f"{path} line {err.lineno}: invalid JSON ({err.msg})") from None
    except RecursionError:
        raise DatasetError(f"dataset registry {path} is nested too deeply to read") from None
    except OSError as err:
        raise DatasetError(f"dataset registry {path} cannot be read: {err.strerror}") from None
    if not isinstance(data, dict):
        raise DatasetError(f"dataset registry {path} must hold an object of named entries")
    return data


def dataset_names(value: str) -> list[str]:
    """'identity, arithmetic_train' -> both names: several datasets are mixed (concatenated)."""
    return [part.strip() for part in (value or "").split(",") if part.strip()]


def entry_from_info(name: str, info: dict, registry: str = "") -> DatasetEntry:
    """The registry's entry `name` as a DatasetEntry; DatasetError names the entry and key that is malformed."""
    where = f"registry entry '{name}'"
    if not isinstance(info, dict):
        raise DatasetError(f"{where} must be an object of keys (file_name, formatting, ...), got {type(info).__name__}")
    for key, kind in (("file_name", str), ("hf_hub_url", str), ("formatting", str), ("split", str),
                      ("columns", dict), ("num_samples", int)):
        if info.get(key) is not None and not isinstance(info[key], kind) or isinstance(info.get(key), bool):
            raise DatasetError(f"{where}: '{key}' must be {'text' if kind is str else kind.__name__}, "
                               f"got {type(info[key]).__name__}")
    if (info.get("num_samples") or 0) < 0:
        raise DatasetError(f"{where}: 'num_samples' must not be negative")
    tags = info.get("tags")
    return DatasetEntry(
        name=name,
        path=registry_path(registry).parent / info["file_name"] if info.get("file_name") else None,
        formatting=info.get("formatting", "alpaca"),
        columns=dict(info.get("columns") or {}),
        # LLaMA-Factory's `tags` names ShareGPT roles; a list there is only a description (languages).
        tags=dict(tags) if isinstance(tags, dict) else {},
        ranking=bool(info.get("ranking", False)),
        num_samples=int(info.get("num_samples") or 0),
        hub_id=info.get("hf_hub_url", "") if not info.get("file_name") else "",
        split=info.get("split", "train"),
    )


def unavailable_reason(entry: DatasetEntry) -> str | None:
    """Why an entry cannot be used here, or None when it can."""
    if entry.path is not None:
        return None if entry.path.is_file() else f"its file {entry.path} is missing"
    if entry.hub_id:
        return hub_offline_reason(entry.hub_id)
    return "it names no local file_name or hf_hub_url (script and cloud datasets are not supported)"


def list_entries(registry: str = "", policy: AccessPolicy | None = None) -> list[tuple[DatasetEntry, str | None]]:
    """Every registry entry with the reason it is unavailable (None when usable)."""
    out = []
    for name, info in read_registry(registry, policy).items():
        if not isinstance(info, dict):
            continue
        try:
            entry = entry_from_info(name, info, registry)
        except DatasetError as err:
            out.append((DatasetEntry(name=name), str(err)))
            continue
        outside = policy.read_refusal(entry.path) if policy is not None and entry.path is not None else None
        # Hub entries are not probed here (dozens of network calls); they are checked when chosen.
        reason = ("on the hub: needs a network, checked when chosen" if entry.path is None and entry.hub_id
                  else "its file is outside the folders this server reads data from" if outside
                  else unavailable_reason(entry))
        out.append((entry, reason))
    return out


def hub_offline_reason(repo: str) -> str | None:
    """A quick answer to 'can this hub dataset be fetched here?': None when it can."""
    if os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("HF_DATASETS_OFFLINE") == "1":
        return f"hub dataset '{repo}' needs a network and this machine is set offline (HF_HUB_OFFLINE=1)"
    try:
        from huggingface_hub import HfApi

        HfApi().dataset_info(repo, timeout=5)
    except Exception as err:  # network errors come in many types; all mean the same here
        return (f"hub dataset '{repo}' could not be reached ({type(err).__name__}); without a network "
                "upload the file or give a local path")
    return None


def find_dataset(name: str, registry: str = "", policy: AccessPolicy | None = None) -> DatasetEntry:
    """Resolve a registry name, a file path or a hub id into a DatasetEntry.

    With a `policy` (the web server's), a file is used only inside its readable folders, and a registry
    entry's file_name must lie there too; a path outside is not even looked at."""
    as_path = Path(name).expanduser()
    outside = policy.read_refusal(as_path, f"dataset '{name}'") if policy is not None else None
    if as_path.suffix and not outside and as_path.is_file():
        return DatasetEntry(name=as_path.name, path=as_path, formatting="auto")
    entries = read_registry(registry, policy)
    if name in entries:
        entry = entry_from_info(name, entries[name], registry)
        if entry.path is not None:
            refuse_outside(policy, entry.path, f"dataset '{name}' (file_name in {registry_path(registry).name})")
        reason = unavailable_reason(entry)
        if reason:
            raise DatasetError(f"dataset '{name}' is unavailable: {reason}")
        return entry
    if HUB_ID.match(name) and not name.startswith((".", "/", "~")) and not as_path.exists():
        reason = hub_offline_reason(name)
        if reason:
            raise DatasetError(reason)
        return DatasetEntry(name=name, formatting="auto", hub_id=name)
    if outside:
        raise DatasetError(outside)
    if as_path.suffix and not as_path.exists():
        raise DatasetError(f"dataset file not found: {as_path}")
    known = ", ".join(sorted(entries)) or "none"
    raise DatasetError(f"dataset '{name}' is neither a file nor in the registry {registry_path(registry)} (known: {known})")
