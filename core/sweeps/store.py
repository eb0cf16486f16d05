"""A sweep as a file: `<workspace>/sweeps/<sweep_id>.json`, written whole (temporary name, then rename).

    {"sweep_id", "name", "created_at", "source": the job or sweep file it came from,
     "job": the base job as plain data, "grid": {field: [values]}, "ties": {field: expression},
     "eval": an eval dataset or "", "planned": how many runs it makes,
     "runs": [{"entry_id", "settings": {field: value}}, ...] in queue order}

The runs are queue entries (core/runs/queue.py): `locate` follows each from the queue into its run folder,
so the sweep, like the queue, is all on disk and a restarted UI or scheduler carries on without losing any.
"""
from __future__ import annotations

import json
import secrets
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from core.runs.job_folder import write_atomic


def sweeps_dir(workspace: Path) -> Path:
    return Path(workspace) / "sweeps"


@dataclass
class Sweep:
    sweep_id: str
    job: dict
    grid: dict
    ties: dict = field(default_factory=dict)
    eval: str = ""
    source: str = ""
    name: str = ""
    created_at: float = 0.0
    planned: int = 0
    runs: list = field(default_factory=list)

    @property
    def swept(self) -> list[str]:
        """The fields whose values differ between runs: the grid's, then the tied ones."""
        return list(self.grid) + [k for k in self.ties if k not in self.grid]

    def path(self, workspace: Path) -> Path:
        return sweeps_dir(workspace) / f"{self.sweep_id}.json"

    def save(self, workspace: Path) -> Path:
        path = self.path(workspace)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, json.dumps(asdict(self), indent=1, ensure_ascii=False))
        return path


def new_id() -> str:
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"


def load(workspace: Path, sweep_id: str) -> Sweep:
    path = sweeps_dir(workspace) / f"{Path(sweep_id).stem}.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LookupError(f"no sweep {sweep_id!r} in {sweeps_dir(workspace)}") from None
    except ValueError as err:
        raise LookupError(f"{path} is not a readable sweep file: {err}") from None
    known = set(Sweep.__dataclass_fields__)
    return Sweep(**{k: v for k, v in data.items() if k in known})


def list_sweeps(workspace: Path) -> list[Sweep]:
    """Every readable sweep of the workspace, newest first."""
    found = []
    for path in sorted(sweeps_dir(workspace).glob("*.json"), reverse=True):
        try:
            found.append(load(workspace, path.stem))
        except LookupError:
            continue
    return found
