"""What an export is asked to do, declared once, and every check that can be made before it launches.

The fields below are the one declaration of the export options: `app.py export`'s flags and the
Export tab's controls are built from them, with their defaults, help and allowed values.
"""
from __future__ import annotations

import os
import re
import shutil
import tempfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from core.models.adapter import check_run
from core.options import build_options
from core.runs.folder import runs_dir
from core.safety.access import AccessDenied
from core.spec.schema import opt

GGUF_TYPES = ("f16", "q8_0")
DTYPES = ("float32", "bfloat16", "float16")
SHARD_SIZE = re.compile(r"^\s*(\d{1,12}(?:\.\d{1,6})?)\s*(KB|MB|GB)\s*$", re.IGNORECASE)
SIZE_UNITS = {"KB": 10**3, "MB": 10**6, "GB": 10**9}  # decimal, as transformers reads them
# A shard below a megabyte makes a folder of hundreds of files; above a terabyte it is no limit at all.
MIN_SHARD_BYTES, MAX_SHARD_BYTES = 10**6, 10**12
# The Modelfile's system prompt: as long as the longest conversation chat accepts by default.
MAX_SYSTEM_CHARS = 32000
DEFAULT_FOLDER_SUFFIX = "-merged"
# Bytes an export writes per base-model parameter: the merged weights in their dtype, and each GGUF file.
WEIGHT_BYTES = {"float32": 4.0, "bfloat16": 2.0, "float16": 2.0}
GGUF_BYTES = {"f16": 2.0, "q8_0": 34 / 32}  # q8_0 stores 32 int8 values and one f16 scale per block
SPACE_MARGIN, SPACE_EXTRA = 1.1, 64 * 2**20  # a tenth more, plus tokenizer, card and chart


class ExportError(ValueError):
    """An export that cannot start or did not pass. `option` names the option at fault, when one is."""

    def __init__(self, message: str, option: str | None = None):
        self.option, self.message = option, message
        super().__init__(f"{option}: {message}" if option else message)


@dataclass
class ExportOptions:
    run: str = opt("", "The finished (or stopped) run whose adapter is merged: a run folder, or a run id in the workspace.",
                   kind="run")
    out: str = opt("", "The folder to create; it must not exist, or be empty. Left out or blank: a new folder "
                       "<workspace>/exports/<run>-merged.", kind="path")
    shard_size: str = opt("2GB", "Largest safetensors file, e.g. 500MB or 2GB (from 1MB to 1000GB); a bigger model is split into shards.")
    dtype: str = opt("float32", "Number format of the saved weights. float32 keeps the merge exact; bfloat16 or "
                                "float16 halve the size. The merge itself is always done in float32.", choices=list(DTYPES))
    gguf: list[str] = opt([], "Also write GGUF files of these types, for llama.cpp and Ollama: f16 is lossless here, "
                              "q8_0 is about half the size. Each is loaded back and its answer compared.",
                          choices=list(GGUF_TYPES), multi=True)
    ollama: bool = opt(False, "Also write an Ollama Modelfile (its template and stop tokens come from the model's "
                              "own chat template).")
    system: str = opt("", "System prompt written into the Modelfile (at most 32000 characters); blank keeps the "
                          "chat template's own.")
    # Not a user option: the largest |logit difference| allowed between the merged model and base + adapter.
    # None picks it by dtype; tests tighten it.
    tolerance: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def default_out(workspace: Path, run_id: str) -> Path:
    """Where an export goes when no folder is given: <workspace>/exports/<run>-merged, or -merged-2, -3 ...
    when an earlier export of the same run took that name, so a second export needs no typing either."""
    from core.export.job import exports_dir  # job.py imports this module

    base = exports_dir(workspace) / f"{run_id}{DEFAULT_FOLDER_SUFFIX}"
    candidate, n = base, 1
    while candidate.exists() and (not candidate.is_dir() or any(candidate.iterdir())):
        n += 1
        candidate = base.with_name(f"{base.name}-{n}")
    return candidate


def check_destination(out: Path) -> None:
    """The output folder must be new (or empty) and its place writable; nothing is created here."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ExportError(f"the output folder {out} already exists and is not empty; pick a new folder", "out")
    ancestor = existing_ancestor(out.parent)
    try:
        probe = tempfile.mkdtemp(prefix=".write-probe-", dir=ancestor)
    except OSError as err:
        raise ExportError(f"cannot write to {ancestor}: {err.strerror or err}", "out") from None
    shutil.rmtree(probe, ignore_errors=True)
    if not os.access(ancestor, os.W_OK):
        raise ExportError(f"cannot write to {ancestor}: permission denied", "out")


def existing_ancestor(path: Path) -> Path:
    while not path.exists():
        path = path.parent
    return path


def expected_bytes(run, options: ExportOptions) -> int | None:
    """About how many bytes the export writes, from the base model's parameter count (read from its config
    alone); None when the base cannot be read now (the export itself then says why)."""
    from core.models.params import meta_model
    from core.spec import SpecError, load_spec

    try:
        spec = load_spec(str(run.job))
        _, model = meta_model(spec.model.path, spec.model.trust_remote_code)
    except (SpecError, ValueError, OSError):
        return None
    params = sum(p.numel() for p in model.parameters())
    per_param = WEIGHT_BYTES[options.dtype] + sum(GGUF_BYTES[t] for t in options.gguf)
    return int(params * per_param * SPACE_MARGIN) + SPACE_EXTRA


def gigabytes(size: float) -> str:
    return f"{size / 2**30:.2f} GB"


def check_space(out: Path, need: int | None) -> None:
    """ExportError naming `out` when its file system has less free space than the export needs."""
    if need is None:
        return
    where = existing_ancestor(out)
    free = shutil.disk_usage(where).free
    if free < need:
        raise ExportError(f"the export needs about {gigabytes(need)} but {where} has only {gigabytes(free)} free; "
                          "free some space or pick a folder on another disk", "out")


def shard_bytes(text: str) -> int:
    """The shard size in bytes, or ExportError naming shard_size when it is not a size within the bounds."""
    match = SHARD_SIZE.match(str(text))
    if not match:
        raise ExportError(f"{str(text)[:40]!r} is not a size like 500MB or 2GB", "shard_size")
    size = int(float(match.group(1)) * SIZE_UNITS[match.group(2).upper()])
    if not MIN_SHARD_BYTES <= size <= MAX_SHARD_BYTES:
        raise ExportError(f"{str(text).strip()} is out of bounds: a shard size must be from 1MB to 1000GB", "shard_size")
    return size


def resolve(options: ExportOptions, workspace: Path) -> ExportOptions:
    """Fill in what a user may leave out: a run id names a run of `workspace`, and a blank output folder
    becomes the default one. The CLI and the Export tab both call this before starting the job."""
    run = str(options.run or "").strip()
    if run and not Path(run).expanduser().exists() and (runs_dir(workspace) / run).exists():
        run = str(runs_dir(workspace) / run)
    out = str(options.out or "").strip()
    if not out and run:
        out = str(default_out(workspace, Path(run).name))
    return replace(options, run=run, out=out)


def check_options(options: ExportOptions, policy=None) -> ExportOptions:
    """Raise OptionsError (every bad value, each named), ExportError (naming its option) or RunNotReady, all
    ValueErrors, for the first kind of problem found; return the options normalised.

    `policy` (core.safety.access.AccessPolicy) is the web server's: the run must lie where it reads, the output
    folder where it writes exports, and a run that allowed its model folder's code needs the operator's leave.
    The CLI passes none: its user may export any run to any folder they name."""
    build_options(ExportOptions, options.to_dict())  # types, bounds, choices: OptionsError names each option
    shard_bytes(options.shard_size)
    if len(str(options.system)) > MAX_SYSTEM_CHARS:
        raise ExportError(f"the system prompt is {len(str(options.system))} characters; at most {MAX_SYSTEM_CHARS}",
                          "system")
    if not str(options.run).strip():
        raise ExportError("no run given", "run")
    if not str(options.out or "").strip():
        raise ExportError("no output folder given", "out")
    if policy is not None:
        # Judged on the paths alone, before either is looked at.
        if policy.read_refusal(options.run):  # one answer whether such a folder exists or not
            raise ExportError(f"{str(options.run)[:200]!r} is not a run of this workspace; pick one from the list", "run")
        try:
            policy.check_write(options.out)
        except AccessDenied as err:
            raise ExportError(str(err), "out") from None
    run = check_run(options.run)
    out = Path(options.out).expanduser().resolve()
    if out == run.path or run.path in out.parents:
        raise ExportError("the output folder must be outside the run folder", "out")
    if policy is not None:
        from core.spec import load_spec

        refused = policy.remote_code_refusal(load_spec(str(run.job)).model.trust_remote_code)
        if refused:
            raise ExportError(f"the run's job sets model.trust_remote_code: {refused}", "run")
    check_destination(out)
    check_space(out, expected_bytes(run, options))
    return ExportOptions(**{**options.to_dict(), "run": str(run.path), "out": str(out),
                            "shard_size": options.shard_size.replace(" ", "").upper()})
