"""Command-line entry points; each runs the same core code the UI calls."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from core.paths import default_workspace


def _job_args(parser: argparse.ArgumentParser, workspace: bool = True) -> None:
    parser.add_argument("job", help="job YAML file (e.g. presets/quickstart.yaml)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a field, e.g. --set lora.r=16 (repeatable)")
    if workspace:
        parser.add_argument("--workspace", type=Path, default=None, help="where runs are written (default: ./workspace)")


def _load_job(args):
    """The validated spec from JOB and --set, or None after printing every problem with its field."""
    from core.spec import SpecError, load_spec

    try:
        return load_spec(args.job, args.overrides)
    except SpecError as err:
        print(f"error: invalid job:\n{err}", file=sys.stderr)
        return None


def _workspace(args) -> Path:
    return (args.workspace or default_workspace()).resolve()


def cmd_train(args) -> int:
    from tqdm import tqdm

    from core.runs import runner

    spec = _load_job(args)
    if spec is None:
        return 2
    try:
        run = runner.start(spec, _workspace(args))
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

    serve(host=args.host, port=args.port, workspace=_workspace(args))
    return 0


def cmd_bench(args) -> int:
    from core.perf.bench import run_benchmark

    spec = _load_job(args)
    return 2 if spec is None else run_benchmark(spec, _workspace(args))


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
    from tqdm import tqdm

    from core.export import job as export_job
    from core.export.options import ExportOptions
    from core.runs.folder import runs_dir
    from core.runs.launch import LaunchError

    workspace = _workspace(args)
    run = Path(args.run)
    if not run.exists() and (runs_dir(workspace) / args.run).exists():
        run = runs_dir(workspace) / args.run  # a run id from this workspace
    options = ExportOptions(run=str(run), out=str(args.out), shard_size=args.shard_size, dtype=args.dtype,
                            gguf=args.gguf, ollama=args.ollama, system=args.system)
    try:
        job = export_job.start(options, workspace)
    except ValueError as err:  # ExportError and RunNotReady: bad input, nothing was started
        print(f"error: {err}", file=sys.stderr)
        return 2
    except LaunchError as err:  # the export process could not start; the job folder says failed
        print(f"error: {err}", file=sys.stderr)
        return 1
    bar = tqdm(total=100, file=sys.stderr, bar_format="{percentage:3.0f}%|{bar}| {desc}")

    def tick(status):
        # Redraw only when something moves, so a log of this output stays short.
        n, stage = int(100 * (status.get("progress") or 0)), status.get("stage") or ""
        if (n, stage) != (bar.n, bar.desc):
            bar.n = n
            bar.set_description_str(stage)

    try:
        status = export_job.wait(job, on_tick=tick)
    except KeyboardInterrupt:
        print("\ncancelling...", file=sys.stderr)
        job.cancel()
        status = export_job.wait(job)
    bar.close()
    if status["state"] != "completed":
        error = status.get("error") or {}
        print(f"error: the export ended {status['state']}: {error.get('kind', '')} {error.get('message', '')}\n"
              f"--- end of {job.log_file} ---\n{job.log_tail()}", file=sys.stderr)
        return 1
    result = status["result"]
    print(f"max |logit difference| vs base + adapter: {result['max_logit_diff']:.3g} "
          f"(tolerance {result['tolerance']:.3g})", file=sys.stderr)
    for item in result["gguf"]:
        print(f"{item['file']}: {item['size_mb']} MB, greedy answer "
              f"{'matches' if item['same_answer'] else 'differs from'} the merged model", file=sys.stderr)
    print(options.out if Path(options.out).is_absolute() else Path(options.out).resolve())
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="app.py", description="LoRA Workbench")
    sub = parser.add_subparsers(dest="command")
    serve = sub.add_parser("serve", help="serve the web UI (the default)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=7860)
    serve.add_argument("--workspace", type=Path, default=None)
    _job_args(sub.add_parser("train", help="train a job in the foreground"))
    _job_args(sub.add_parser("bench", help="measure throughput, memory and MFU for a job"))
    _job_args(sub.add_parser("params", help="count trainable and total parameters without loading weights"),
              workspace=False)
    data = sub.add_parser("data", help="dataset tools").add_subparsers(dest="data_command", required=True)
    check = data.add_parser("check", help="validate a dataset and list every problem with its line")
    check.add_argument("dataset", help="a file path, a registry name, or several separated by commas")
    check.add_argument("--registry", default="", help="dataset_info.json to resolve names (default: the bundled one)")
    export = sub.add_parser("export", help="merge a run's adapter into its base and write a model folder")
    export.add_argument("run", help="run folder, or a run id in the workspace")
    export.add_argument("--out", required=True, type=Path, help="folder to create (must not exist, or be empty)")
    export.add_argument("--shard-size", default="2GB", help="largest safetensors file, e.g. 500MB (default 2GB)")
    export.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"],
                        help="weights as saved (default float32)")
    export.add_argument("--gguf", action="append", default=[], choices=["f16", "q8_0"],
                        help="also write a GGUF file of this type (repeatable)")
    export.add_argument("--ollama", action="store_true", help="also write an Ollama Modelfile")
    export.add_argument("--system", default="", help="system prompt for the Modelfile (default: the template's)")
    export.add_argument("--workspace", type=Path, default=None)
    args = parser.parse_args(argv or ["serve"])
    handlers = {"serve": cmd_serve, "train": cmd_train, "bench": cmd_bench, "params": cmd_params,
                "data": cmd_data, "export": cmd_export}
    return handlers[args.command or "serve"](args)
