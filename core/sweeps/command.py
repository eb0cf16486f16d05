"""`app.py sweep` (queue a sweep) and `app.py sweeps` (list sweeps, or print one's results table)."""
from __future__ import annotations

import argparse
import json
import sys
import time

SWEEP_HELP = "run a job over a grid of settings: one queued run per combination, with a results table"


def add_parsers(sub, workspace: argparse.ArgumentParser) -> None:
    sweep = sub.add_parser("sweep", parents=[workspace], help=SWEEP_HELP)
    sweep.add_argument("job", help="a job YAML (e.g. presets/quickstart.yaml) or a sweep file (presets/sweeps/*.yaml)")
    sweep.add_argument("--grid", action="append", default=[], metavar="FIELD=V1,V2",
                       help="a swept field and its values, e.g. --grid lora.r=4,8,16 (repeatable; every "
                            "combination of the lines is run)")
    sweep.add_argument("--tie", action="append", default=[], metavar="FIELD=EXPR",
                       help="set a field from others in each combination, e.g. --tie lora.alpha=2*lora.r "
                            "(numbers, field names, + - * / and brackets)")
    sweep.add_argument("--eval", default=None, metavar="DATASET",
                       help="evaluate each finished run on this dataset (a registry name or a file); its scores "
                            "join the table")
    sweep.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override a field of the base job, e.g. --set train.max_steps=20 (repeatable)")
    sweep.add_argument("--name", default="", help="a title for the sweep")
    show = sub.add_parser("sweeps", parents=[workspace], help="list the sweeps, or print one sweep's results table")
    show.add_argument("sweep", nargs="?", help="a sweep id (from `app.py sweep`) or its file")
    show.add_argument("--json", action="store_true", help="print the rows as JSON objects")
    show.add_argument("--follow", action="store_true", help="print the table again as it changes until every run ended")


def cmd_sweep(args) -> int:
    from core.sweeps.grid import SweepError
    from core.sweeps.start import start_from_file

    try:
        sweep = start_from_file(args.workspace, args.job, args.grid, args.tie, args.eval, args.overrides, args.name)
    except SweepError as err:
        print(f"error: sweep not queued (nothing was queued):\n{err}", file=sys.stderr)
        return 2
    for number, item in enumerate(sweep.runs, start=1):
        settings = ", ".join(f"{k}={v}" for k, v in item["settings"].items())
        print(f"{number}. {settings}  queued as {item['entry_id']}", file=sys.stderr)
    print(f"sweep {sweep.sweep_id}: {len(sweep.runs)} runs queued; `app.py sweeps {sweep.sweep_id}` shows its table",
          file=sys.stderr)
    print(sweep.path(args.workspace))
    return 0


def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return format(value, ".4g")
    return str(value)


def print_table(sweep, rows) -> None:
    from core.sweeps.results import cell, columns

    heads = columns(sweep, rows)
    cells = [[_text(cell(row, c)) for c in heads] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(heads)]
    print("  ".join(h.ljust(w) for h, w in zip(heads, widths)).rstrip())
    for r in cells:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip())
    for row in rows:
        if row.reason:
            print(f"#{row.number}: {row.reason}")
        if row.evaluation.get("state") in ("unavailable", "failed"):
            print(f"#{row.number}: eval {row.evaluation['state']}: {row.evaluation.get('reason')}")


def cmd_sweeps(args) -> int:
    from core.runs import scheduler
    from core.sweeps.results import is_finished, sweep_rows
    from core.sweeps.store import list_sweeps, load

    scheduler.ensure_running(args.workspace)  # runs still waiting after a restart start again
    if not args.sweep:
        for sweep in list_sweeps(args.workspace):
            rows = sweep_rows(args.workspace, sweep, request_eval=False)
            done = sum(row.state == "completed" for row in rows)
            grid = "  ".join(f"{k}={','.join(map(str, v))}" for k, v in sweep.grid.items())
            print(f"{sweep.sweep_id}  {done}/{len(rows)} completed  {grid}  {sweep.name}".rstrip())
        return 0
    try:
        sweep = load(args.workspace, args.sweep)
    except LookupError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    last = None
    while True:
        rows = sweep_rows(args.workspace, sweep)
        if args.json:
            text = json.dumps([row.to_json() for row in rows], indent=1)
            if text != last:
                print(text)
        elif (text := [r.to_json() for r in rows]) != last:
            print_table(sweep, rows)
        last = text
        if not args.follow or is_finished(rows):
            return 0
        time.sleep(2.0)
