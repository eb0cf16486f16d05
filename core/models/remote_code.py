"""Code shipped in a model folder: noticed before anything loads, and never run unless the job says so.

A Hugging Face model folder may carry its own Python (modeling_*.py, tokenization_*.py) that its
config.json or tokenizer_config.json names under `auto_map`. transformers runs that code only with
trust_remote_code=True; left unset it asks "[y/N]" on the terminal, which hangs a server or a detached
trainer. So every load here passes the job's `model.trust_remote_code` (False by default) explicitly,
and a folder that cannot load without its own code is refused first, naming that field.

A folder whose model type transformers knows loads with transformers' own code even when it has an
auto_map, so only folders that need their code are refused.
"""
from __future__ import annotations

import json
from pathlib import Path

from core.models.source import ModelSourceError

FIELD = "model.trust_remote_code"


class RemoteCodeRefused(ModelSourceError):
    """The model needs code from its folder and the job does not allow it; the message names the field."""


def model_folder(source: str) -> Path | None:
    """The folder holding `source`'s config files: the folder itself, or a cached hub snapshot; None if neither."""
    if Path(source).is_dir():
        return Path(source)
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(source, "config.json")
    except Exception:  # not a valid repo id for the cache lookup: nothing local to read
        return None
    return Path(cached).parent if isinstance(cached, str) else None


def _read_json(path: Path) -> dict:
    """A config file's object, or {} when it is absent or unreadable (the model checks report a broken file)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _named_code(auto_map) -> str:
    """The first class reference an auto_map names, e.g. 'modeling_foo.FooForCausalLM'."""
    values = auto_map.values() if isinstance(auto_map, dict) else []
    for value in values:
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, str) and item:
                return item
    return "custom classes"


def custom_code_reason(source: str) -> str | None:
    """Why `source` (a folder or a cached hub id) cannot load without running its own code, or None."""
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    folder = model_folder(source)
    if folder is None:
        return None
    config = _read_json(folder / "config.json")
    model_type = config.get("model_type")
    known_type = isinstance(model_type, str) and model_type in CONFIG_MAPPING_NAMES
    if config.get("auto_map") and not known_type:
        return (f"its config.json names code of its own ({_named_code(config['auto_map'])}) for model type "
                f"{model_type!r}, which transformers does not know")
    tokenizer = _read_json(folder / "tokenizer_config.json")
    if tokenizer.get("auto_map") and not known_type and not _known_tokenizer(tokenizer.get("tokenizer_class")):
        return (f"its tokenizer_config.json names a tokenizer of its own ({_named_code(tokenizer['auto_map'])}) "
                "that transformers does not have")
    return None


def _known_tokenizer(name) -> bool:
    from transformers.models.auto.tokenization_auto import tokenizer_class_from_name

    if not isinstance(name, str) or not name:
        return False
    try:
        return tokenizer_class_from_name(name) is not None or tokenizer_class_from_name(name.removesuffix("Fast")) is not None
    except Exception:  # an import inside transformers failed: treat the class as unknown
        return False


def refusal(source: str, trust_remote_code: bool) -> str | None:
    """The message refusing `source`, or None when it loads without its own code or the job allows that code."""
    if trust_remote_code:
        return None
    reason = custom_code_reason(source)
    if reason is None:
        return None
    return (f"{source}: this model needs Python code from its folder to load ({reason}). That code is not run "
            f"unless the job sets {FIELD}: true, which runs it with your rights; set it only for code you trust")


def refuse_custom_code(source: str, trust_remote_code: bool) -> None:
    """Raise RemoteCodeRefused when `source` needs its own code and the job does not allow it."""
    message = refusal(source, trust_remote_code)
    if message:
        raise RemoteCodeRefused(message)
