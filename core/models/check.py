"""What a local model folder must hold before a run starts, read without loading any weight.

A folder that fails here used to pass the launch checks and fail minutes later in the trainer, after
a run folder existed: no weights, a truncated or garbled safetensors file, a config.json that is not
JSON or names no model type. Here each is found in well under a second (only file headers are read),
and named with its file. A missing chat template is not an error: the fallback template is used, and
the user is told so.
"""
from __future__ import annotations

import json
import math
import struct
import zipfile
from pathlib import Path

# Bytes per element of each safetensors dtype.
DTYPE_BYTES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "F8_E8M0": 1, "F4": 0.5, "F6_E2M3": 0.75,
               "F6_E3M2": 0.75, "I16": 2, "U16": 2, "F16": 2, "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "I64": 8,
               "U64": 8, "F64": 8, "C64": 8}
MAX_HEADER_BYTES = 100_000_000  # safetensors' own limit for the JSON header
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "spiece.model", "vocab.txt")
TEMPLATE_FILES = ("chat_template.jinja", "chat_template.json")
NO_TEMPLATE_NOTE = ("the model has no chat template; conversations are written in the fallback ChatML form "
                    "(<|im_start|>role ... <|im_end|>), which is saved with the adapter")


def folder_problems(folder: Path) -> tuple[list[str], list[str]]:
    """(problems, notes) for a model folder: problems stop the launch, notes are told to the user."""
    folder = Path(folder)
    problems = _config_problems(folder) + _weight_problems(folder) + _tokenizer_problems(folder)
    notes = [] if _has_chat_template(folder) else [NO_TEMPLATE_NOTE]
    return problems, notes


def _read_json(path: Path) -> tuple[object, str | None]:
    try:
        return json.loads(path.read_text(encoding="utf-8")), None
    except UnicodeDecodeError:
        return None, f"{path} is not UTF-8 text"
    except json.JSONDecodeError as err:
        return None, f"{path} line {err.lineno}: not valid JSON ({err.msg})"
    except RecursionError:
        return None, f"{path}: nested too deeply to read"
    except OSError as err:
        return None, f"{path} cannot be read: {err.strerror}"


def _config_problems(folder: Path) -> list[str]:
    path = folder / "config.json"
    config, problem = _read_json(path)
    if problem:
        return [problem]
    if not isinstance(config, dict):
        return [f"{path} must hold a JSON object, got {type(config).__name__}"]
    if not isinstance(config.get("model_type"), str) or not config["model_type"]:
        return [f"{path} names no model_type, so the architecture cannot be told (e.g. \"model_type\": \"llama\")"]
    return []


def _weight_problems(folder: Path) -> list[str]:
    """Every weight file the folder's index names (or the single file) is there and has a sound header."""
    for index_name, reader in (("model.safetensors.index.json", safetensors_problem),
                               ("pytorch_model.bin.index.json", torch_bin_problem)):
        index = folder / index_name
        if index.is_file():
            return _sharded_problems(index, reader)
    files = sorted(folder.glob("*.safetensors"))
    if files:
        return [p for p in map(safetensors_problem, files) if p]
    bins = sorted(folder.glob("pytorch_model*.bin"))
    if bins:
        return [p for p in map(torch_bin_problem, bins) if p]
    return [f"{folder} holds no weights (model.safetensors, model-*.safetensors with an index, or pytorch_model.bin)"]


def _sharded_problems(index: Path, reader) -> list[str]:
    data, problem = _read_json(index)
    if problem:
        return [problem]
    weight_map = data.get("weight_map") if isinstance(data, dict) else None
    if not isinstance(weight_map, dict) or not weight_map or not all(isinstance(v, str) for v in weight_map.values()):
        return [f"{index} has no weight_map of tensor names to files"]
    problems = []
    for name in sorted(set(weight_map.values())):
        shard = index.parent / name
        if Path(name).is_absolute() or ".." in Path(name).parts:
            problems.append(f"{index} names a file outside the model folder: {name[:100]}")
        elif not shard.is_file():
            problems.append(f"{shard} is missing ({index.name} lists it)")
        else:
            problems.append(reader(shard))
    return [p for p in problems if p]


def safetensors_problem(path: Path) -> str | None:
    """Why a .safetensors file cannot be loaded, read from its header alone; None when it looks whole.

    The header lists each tensor's dtype, shape and byte range; a file cut short (an interrupted copy)
    or a garbled header is caught here without reading the tensors themselves."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            head = fh.read(8)
            if len(head) < 8:
                return f"{path} is truncated: {size} bytes, not even a safetensors header"
            (length,) = struct.unpack("<Q", head)
            if length > min(MAX_HEADER_BYTES, size - 8):
                return f"{path} is not a safetensors file (its first 8 bytes announce a {length:,}-byte header)"
            raw = fh.read(length)
    except OSError as err:
        return f"{path} cannot be read: {err.strerror}"
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return f"{path} is not a safetensors file (its header is not JSON): garbled or another format"
    if not isinstance(header, dict):
        return f"{path} has a garbled safetensors header"
    data_bytes, end = size - 8 - length, 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        bad = _tensor_entry_problem(info)
        if bad:
            return f"{path}: tensor {name[:80]!r} {bad}"
        begin, stop = info["data_offsets"]
        end = max(end, stop)
    if end > data_bytes:
        return (f"{path} is truncated: its header promises {end:,} bytes of tensor data, the file holds {data_bytes:,} "
                "(an interrupted download or copy?)")
    return None


def _tensor_entry_problem(info) -> str | None:
    if not isinstance(info, dict) or info.get("dtype") not in DTYPE_BYTES:
        return "has no known dtype in the header"
    shape, offsets = info.get("shape"), info.get("data_offsets")
    if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
        return "has a garbled shape in the header"
    if (not isinstance(offsets, list) or len(offsets) != 2 or not all(isinstance(o, int) for o in offsets)
            or not 0 <= offsets[0] <= offsets[1]):
        return "has garbled byte offsets in the header"
    if offsets[1] - offsets[0] != math.prod(shape) * DTYPE_BYTES[info["dtype"]]:
        return "has a byte range that does not match its shape and dtype"
    return None


def torch_bin_problem(path: Path) -> str | None:
    """A PyTorch .bin is a zip archive (torch.save since 1.6); a cut-off one has no readable directory."""
    try:
        size = path.stat().st_size
    except OSError as err:
        return f"{path} cannot be read: {err.strerror}"
    if size == 0:
        return f"{path} is empty"
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as archive:
                if not any(n.endswith("data.pkl") for n in archive.namelist()):
                    return f"{path} is a zip archive but not a PyTorch checkpoint (no data.pkl)"
        except (zipfile.BadZipFile, OSError) as err:
            return f"{path} is damaged: {err}"
        return None
    with open(path, "rb") as fh:
        first = fh.read(2)
    if first[:1] == b"\x80":  # the pickle of the legacy (pre-1.6) format; only its start can be checked
        return None
    return f"{path} is not a PyTorch checkpoint (truncated, or another format)"


def _tokenizer_problems(folder: Path) -> list[str]:
    if any((folder / name).is_file() for name in TOKENIZER_FILES):
        return []
    return [f"{folder} has no tokenizer ({', '.join(TOKENIZER_FILES[:3])}); copy the base model's tokenizer files in"]


def _has_chat_template(folder: Path) -> bool:
    if any((folder / name).is_file() for name in TEMPLATE_FILES):
        return True
    if (folder / "additional_chat_templates").is_dir():
        return True
    config, problem = _read_json(folder / "tokenizer_config.json")
    return not problem and isinstance(config, dict) and bool(config.get("chat_template"))
