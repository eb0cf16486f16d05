#!/usr/bin/env bash
# Set up if needed, then serve the workbench on http://127.0.0.1:7860
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python app.py serve "$@"
