"""What an export is asked to do, and every check that can be made before it launches."""
from __future__ import annotations

import os
import re
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from core.models.adapter import check_run

GGUF_TYPES = ("f16", "q8_0")
DTYPES = ("float32", "bfloat16", "float16")
SHARD_SIZE = re.compile(r"^\s*\d+(\.\d+)?\s*(KB|MB|GB)\s*$", re.IGNORECASE)


class ExportError(ValueError):
    """An export that cannot start or did not pass; the message names the problem."""


@dataclass
class ExportOptions:
    run: str                      # the run folder
    out: str                      # the folder to create; must not exist, or be empty
    shard_size: str = "2GB"       # largest safetensors file; bigger models are split into shards
    dtype: str = "float32"        # weights as saved; the merge itself is always done in float32
    gguf: list[str] = field(default_factory=list)  # GGUF files to write beside the safetensors
    ollama: bool = False          # write an Ollama Modelfile
    system: str = ""              # system prompt for the Modelfile (the template's default when empty)
    tolerance: float | None = None  # max |logit difference| allowed; by dtype when None

    def to_dict(self) -> dict:
        return asdict(self)


def check_destination(out: Path) -> None:
    """The output folder must be new (or empty) and its place writable; nothing is created here."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ExportError(f"the output folder {out} already exists and is not empty; pick a new folder")
    ancestor = out.parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    try:
        probe = tempfile.mkdtemp(prefix=".write-probe-", dir=ancestor)
    except OSError as err:
        raise ExportError(f"cannot write to {ancestor}: {err.strerror or err}") from None
    shutil.rmtree(probe, ignore_errors=True)
    if not os.access(ancestor, os.W_OK):
        raise ExportError(f"cannot write to {ancestor}: permission denied")


def check_options(options: ExportOptions) -> ExportOptions:
    """Raise ExportError (or RunNotReady, a ValueError too) for the first problem; return the options normalised."""
    run = check_run(options.run)
    if not options.out or not str(options.out).strip():
        raise ExportError("no output folder given")
    out = Path(options.out).expanduser().resolve()
    if out == run.path or run.path in out.parents:
        raise ExportError("the output folder must be outside the run folder")
    check_destination(out)
    if not SHARD_SIZE.match(str(options.shard_size)):
        raise ExportError(f"shard size '{options.shard_size}' is not a size like 500MB or 2GB")
    if options.dtype not in DTYPES:
        raise ExportError(f"dtype '{options.dtype}' is not one of {', '.join(DTYPES)}")
    unknown = [t for t in options.gguf if t not in GGUF_TYPES]
    if unknown:
        raise ExportError(f"GGUF type {', '.join(unknown)} is not one of {', '.join(GGUF_TYPES)}")
    return ExportOptions(**{**options.to_dict(), "run": str(run.path), "out": str(out),
                            "shard_size": options.shard_size.replace(" ", "").upper()})
