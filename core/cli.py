"""Command-line entry points; each runs the same core code the UI calls."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from core.paths import WORKSPACE_ENV, default_workspace
from core.runtime.quiet import keep_library_output_in

EXPORT_POSITIONAL = ("run",)
WORKSPACE_HELP = (f"where runs, uploads, exports, logs and converted models live "
                  f"(default: ${WORKSPACE_ENV}, else ./workspace)")


def _job_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("job", help="job YAML file (e.g. presets/quickstart.yaml)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a field, e.g. --set lora.r=16 (repeatable)")


def _load_job(args, launch: bool = False):
    """The parsed spec from JOB and --set, or None after printing every problem with its field.

    With `launch`, the job is about to start: the launch checks (model, data, device, the method's
    backend) run too. Whatever parsing ignored (another method's section) is printed as a note.
    """
    from core.spec import SpecError, check_launch, load_spec

    try:
        spec = load_spec(args.job, args.overrides)
        for note in spec.notes:
            print(f"note: {note}", file=sys.stderr)
        if launch:
            check_launch(spec)
    except SpecError as err:
        print(f"error: invalid job:\n{err}", file=sys.stderr)
        return None
    return spec


def use_workspace(path: Path | None) -> Path:
    """Decide the workspace once, for this process and every process it starts: runs, uploads, exports,
    logs and converted models all live there (see core/paths.py)."""
    workspace = (path or default_workspace()).expanduser().resolve()
    os.environ[WORKSPACE_ENV] = str(workspace)
    return workspace


def cmd_train(args) -> int:
    from tqdm import tqdm

    from core.runs import runner

    spec = _load_job(args, launch=True)
    if spec is None:
        return 2
    try:
        run = runner.start(spec, args.workspace)
    except runner.RunnerBusy as err:
        print(f"error: {err}", file=sys.stderr)
        return 3
    except runner.LaunchError as err:  # the run folder says failed, with this reason
        print(f"error: {err}", file=sys.stderr)
        return 1
    bar = tqdm(total=0, unit="step", desc=run.run_id, file=sys.stderr, mininterval=1.0)

    def tick(status):
        # Redraw only when the step moves, so a log file of this output stays short.
        if status.get("total_steps") and bar.total != status["total_steps"]:
            bar.total = status["total_steps"]
            bar.refresh()
        step = status.get("step", 0)
        if step != bar.n:
            bar.update(step - bar.n)

    status = runner.wait(run, on_tick=tick, stop_on_interrupt=True)
    bar.close()
    if status["state"] == "failed":
        print(runner.failure_report(run, status), file=sys.stderr)
    print(run.path)
    return 0 if status["state"] in ("completed", "stopped") else 1


def cmd_serve(args) -> int:
    from webui.app import serve

    serve(host=args.host, port=args.port, workspace=args.workspace)
    return 0


def cmd_bench(args) -> int:
    from core.perf.bench import run_benchmark

    spec = _load_job(args, launch=True)
    return 2 if spec is None else run_benchmark(spec, args.workspace)


def cmd_params(args) -> int:
    from core.models.params import ParamCountError, count_parameters, summary_line

    spec = _load_job(args)
    if spec is None:
        return 2
    try:
        counts = count_parameters(spec)
    except ParamCountError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"model:      {spec.model.path} (method {spec.method})")
    print(f"base model: {counts['total']:,} parameters")
    print(f"targets:    {', '.join(counts['targets'])} ({counts['adapted']} layers)")
    print(summary_line(counts))  # worded as the trainer's log line, so the two compare at a glance
    return 0


def cmd_data(args) -> int:
    """`data check PATH|NAME[,NAME...]`: the same report the UI shows before launch; non-zero when unusable."""
    from core.data.source import check_datasets

    usable = True
    for report in check_datasets(args.dataset, args.registry or ""):
        print(report.summary())
        for line in report.lines():
            print(f"  {line}")
        usable = usable and report.usable
    return 0 if usable else 1


def cmd_export(args) -> int:
    from core.export import job as export_job
    from core.export.options import ExportOptions, resolve
    from core.job_cli import follow, start_job
    from core.option_flags import options_from_flags

    job, code = start_job(lambda: export_job.start(resolve(options_from_flags(
        ExportOptions, args, positional=EXPORT_POSITIONAL), args.workspace), args.workspace), EXPORT_POSITIONAL)
    if job is None:
        return code
    status = follow(job, "export")
    if status is None:
        return 1
    result = status["result"]
    print(f"max |logit difference| vs base + adapter: {result['max_logit_diff']:.3g} "
          f"(tolerance {result['tolerance']:.3g})", file=sys.stderr)
    for item in result["gguf"]:
        print(f"{item['file']}: {item['size_mb']} MB, greedy answer "
              f"{'matches' if item['same_answer'] else 'differs from'} the merged model", file=sys.stderr)
    print(job.options().out)
    return 0


def cmd_eval(args) -> int:
    from core.eval.command import cmd_eval as run

    return run(args)


def build_parser() -> argparse.ArgumentParser:
    from core.eval.command import EVAL_POSITIONAL
    from core.eval.options import EvalOptions
    from core.export.options import ExportOptions
    from core.option_flags import add_option_flags

    # --workspace is accepted before the command and after it, and means the same for every command.
    # Below the command its default is "not given", so it does not undo a --workspace given before it.
    workspace = argparse.ArgumentParser(add_help=False)
    workspace.add_argument("--workspace", type=Path, default=argparse.SUPPRESS, help=WORKSPACE_HELP)
    server = argparse.ArgumentParser(add_help=False)
    server.add_argument("--host", default=argparse.SUPPRESS, help="address to serve on (default 127.0.0.1)")
    server.add_argument("--port", type=int, default=argparse.SUPPRESS, help="port to serve on (default 7860)")

    parser = argparse.ArgumentParser(prog="app.py", description="LoRA Workbench. Without a command it serves the web UI.")
    parser.add_argument("--host", default="127.0.0.1", help="address to serve on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=7860, help="port to serve on (default 7860)")
    parser.add_argument("--workspace", type=Path, default=None, help=WORKSPACE_HELP)
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("serve", parents=[server, workspace], help="serve the web UI (the default)")
    _job_args(sub.add_parser("train", parents=[workspace], help="train a job in the foreground"))
    _job_args(sub.add_parser("bench", parents=[workspace], help="measure throughput, memory and MFU for a job"))
    _job_args(sub.add_parser("params", parents=[workspace],
                             help="count trainable and total parameters without loading weights"))
    data = sub.add_parser("data", help="dataset tools").add_subparsers(dest="data_command", required=True)
    check = data.add_parser("check", parents=[workspace], help="validate a dataset and list every problem with its line")
    check.add_argument("dataset", help="a file path, a registry name, or several separated by commas")
    check.add_argument("--registry", default="", help="dataset_info.json to resolve names (default: the bundled one)")
    export = sub.add_parser("export", parents=[workspace],
                            help="merge a run's adapter into its base and write a model folder")
    add_option_flags(export, ExportOptions, positional=EXPORT_POSITIONAL)
    evaluate = sub.add_parser("eval", parents=[workspace],
                              help="score a run against its base on held-out data and lm-eval benchmarks")
    add_option_flags(evaluate, EvalOptions, positional=EVAL_POSITIONAL)
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    command = args.command or "serve"
    args.workspace = use_workspace(args.workspace)
    keep_library_output_in(args.workspace / "logs" / f"{command}.log")
    handlers = {"serve": cmd_serve, "train": cmd_train, "bench": cmd_bench, "params": cmd_params,
                "data": cmd_data, "export": cmd_export, "eval": cmd_eval}
    return handlers[command](args)
