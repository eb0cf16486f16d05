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

import os
import sys

from core.cli import main

if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:], own_process=True))
    except BrokenPipeError:
        # `app.py runs | head`: the reader closed the pipe. End quietly, as other terminal tools do, instead of
        # a traceback (and keep Python's flush at exit from raising again). SIGPIPE itself stays ignored, so
        # the served UI never dies of a closed client socket.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(141)
