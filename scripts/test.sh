#!/usr/bin/env bash
# Set up if needed, then run the whole test suite (unit, end-to-end and browser tests).
# Browser tests need Debian's chromium (/usr/bin/chromium); .ci/run installs it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1
.venv/bin/ruff check .   # the linter first: a style slip fails in a second, not after the suite
exec .venv/bin/python -m pytest "$@"
