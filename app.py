"""LoRA Workbench: `python app.py` serves the UI; subcommands run the same code from a terminal.

    python app.py [serve] [--host H] [--port P] [--workspace DIR]
    python app.py train JOB.yaml [--set key=value ...] [--workspace DIR]
    python app.py bench JOB.yaml [--set key=value ...] [--workspace DIR]
    python app.py params JOB.yaml [--set key=value ...] [--workspace DIR]
    python app.py data check DATASET [--registry FILE] [--workspace DIR]
    python app.py export RUN [--out DIR] [--shard-size 2GB] [--dtype float32] [--gguf f16|q8_0 ...] [--ollama]
                             [--system TEXT] [--workspace DIR]

`python app.py --help` and `python app.py COMMAND --help` list every option with its default.
"""
from __future__ import annotations

import sys

from core.cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
