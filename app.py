"""LoRA Workbench: `python app.py` serves the UI; subcommands run the same code from a terminal.

    python app.py [serve] [--host H] [--port P] [--workspace DIR]
    python app.py train JOB.yaml [--set key=value ...] [--workspace DIR]
    python app.py bench JOB.yaml [--set key=value ...] [--workspace DIR]
    python app.py params JOB.yaml [--set key=value ...]
"""
from __future__ import annotations

import sys

from core.cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
