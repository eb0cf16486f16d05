#!/usr/bin/env bash
# Set up if needed, then run the whole test suite (unit, end-to-end and browser tests).
# Browser tests need Debian's chromium (/usr/bin/chromium); .ci/run installs it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1
.venv/bin/ruff check .   # the linter first: a style slip fails in a second, not after the suite
# Two workers (pytest-xdist): most of a test's time is a worker process importing torch and friends on one
# core, so two tests side by side use both cores. TEST_WORKERS=0 runs everything in this one process.
exec .venv/bin/python -m pytest -n "${TEST_WORKERS:-2}" --dist loadgroup "$@"
