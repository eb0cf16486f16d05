"""Command-line entry points; each runs the same core code the UI calls."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from core.paths import default_workspace


def _job_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("job", help="job YAML file (e.g. presets/quickstart.yaml)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a field, e.g. --set lora.r=16 (repeatable)")
    parser.add_argument("--workspace", type=Path, default=None, help="where runs are written (default: ./workspace)")


def cmd_train(args) -> int:
    from tqdm import tqdm

    from core import runner
    from core.spec import SpecError, load_spec

    try:
        spec = load_spec(args.job, args.overrides)
    except SpecError as err:
        print(f"error: invalid job:\n{err}", file=sys.stderr)
        return 2
    workspace = (args.workspace or default_workspace()).resolve()
    try:
        run = runner.start(spec, workspace)
    except runner.RunnerBusy as err:
        print(f"error: {err}", file=sys.stderr)
        return 3
    bar = tqdm(total=0, unit="step", desc=run.run_id, file=sys.stderr, mininterval=1.0)

    def tick(status):
        # Redraw only when the step moves, so a log file of this output stays short.
        if status.get("total_steps") and bar.total != status["total_steps"]:
            bar.total = status["total_steps"]
            bar.refresh()
        step = status.get("step", 0)
        if step != bar.n:
            bar.update(step - bar.n)

    try:
        status = runner.wait(run, on_tick=tick)
    except KeyboardInterrupt:
        print("\nstopping after the current step...", file=sys.stderr)
        runner.stop(run)
        status = runner.wait(run)
    bar.close()
    if status["state"] == "failed":
        error = status.get("error") or {}
        print(f"error: training failed ({error.get('kind')}): {error.get('message')}", file=sys.stderr)
        print("--- end of train.log ---\n" + run.log_tail(3000), file=sys.stderr)
    print(run.path)
    return 0 if status["state"] in ("completed", "stopped") else 1


def cmd_serve(args) -> int:
    from webui.app import serve

    serve(host=args.host, port=args.port, workspace=(args.workspace or default_workspace()).resolve())
    return 0


def cmd_bench(args) -> int:
    from core.bench import run_benchmark
    from core.spec import SpecError, load_spec

    try:
        spec = load_spec(args.job, args.overrides)
    except SpecError as err:
        print(f"error: invalid job:\n{err}", file=sys.stderr)
        return 2
    return run_benchmark(spec, (args.workspace or default_workspace()).resolve())


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="app.py", description="LoRA Workbench")
    sub = parser.add_subparsers(dest="command")
    serve = sub.add_parser("serve", help="serve the web UI (the default)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=7860)
    serve.add_argument("--workspace", type=Path, default=None)
    _job_args(sub.add_parser("train", help="train a job in the foreground"))
    _job_args(sub.add_parser("bench", help="measure throughput, memory and MFU for a job"))
    args = parser.parse_args(argv or ["serve"])
    handlers = {"serve": cmd_serve, "train": cmd_train, "bench": cmd_bench}
    return handlers[args.command or "serve"](args)
