"""Command-line entry points; each runs the same core code the UI calls."""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from core.paths import WORKSPACE_ENV, default_workspace
from core.runs.process_group import DEFAULT_GRACE_S
from core.runtime.quiet import keep_library_output_in
from core.sweeps import command as sweep_command

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
    from core.training.process import leave_out_bitsandbytes

    spec = None
    try:
        spec = load_spec(args.job, args.overrides)
        if getattr(args, "own_process", False):  # this process serves this one job (see core/training/process.py)
            leave_out_bitsandbytes(spec.model.path, spec.method)
        if launch:
            check_launch(spec)  # adds its warnings (no chat template, little free disk) to spec.notes
    except SpecError as err:
        failed = err
    else:
        failed = None
    for note in spec.notes if spec is not None else []:
        print(f"note: {note}", file=sys.stderr)
    if failed is not None:
        print(f"error: invalid job:\n{failed}", file=sys.stderr)
        return None
    return spec


def use_workspace(path: Path | None) -> Path:
    """Decide the workspace once, for this process and every process it starts: runs, uploads, exports,
    logs and converted models all live there (see core/paths.py)."""
    workspace = (path or default_workspace()).expanduser().resolve()
    os.environ[WORKSPACE_ENV] = str(workspace)
    return workspace


def print_node_commands(spec, file) -> None:
    from core.runtime.nodes import node_commands

    for rank, command in enumerate(node_commands(spec), start=1):
        print(f"# on node {rank} of {spec.runtime.nodes}, in the project folder there:\n{command}\n", file=file)
    if spec.runtime.main_address in ("127.0.0.1", "localhost", "::1"):
        print(f"# runtime.main_address is {spec.runtime.main_address}: only nodes on this same machine reach it; "
              "give the address the other machines know this one by", file=file)


def cmd_train(args) -> int:
    from core.runs import runner

    if args.print_node_command:
        spec = _load_job(args)  # the commands need the job, not this machine's model, data or devices
        if spec is None:
            return 2
        if spec.runtime.nodes < 2:
            print("error: runtime.nodes is 1, so there are no other nodes; e.g. --set runtime.nodes=2 "
                  "--set runtime.strategy=ddp --set runtime.main_address=ADDRESS", file=sys.stderr)
            return 2
        print_node_commands(spec, sys.stdout)
        return 0
    spec = _load_job(args, launch=True)
    if spec is None:
        return 2
    _warn_if_too_big(spec)
    run, code = _launched(lambda: runner.start(spec, args.workspace), " (`app.py queue` adds it to the queue)")
    if run is None:
        return code
    if spec.runtime.nodes > 1 and spec.runtime.node_rank == 0:
        print(f"main node of {spec.runtime.nodes}: the same command with --print-node-command prints what to run "
              "on the others", file=sys.stderr)
    return _follow(run)


def _launched(start, busy_hint: str = ""):
    """(what `start()` returned, 0), or (None, exit code) with the refusal printed: 2 not resumable,
    3 another run holds the devices, 1 the process could not be launched (the run folder says failed)."""
    from core.runs import resume, runner

    try:
        return start(), 0
    except resume.NotResumable as err:
        code, text = 2, str(err)
    except runner.RunnerBusy as err:
        code, text = 3, f"{err}{busy_hint}"
    except runner.LaunchError as err:
        code, text = 1, str(err)
    print(f"error: {text}", file=sys.stderr)
    return None, code


def _follow(run) -> int:
    """Show the run's progress until it ends (Ctrl-C asks it to stop and save); print its folder last."""
    from tqdm import tqdm

    from core.runs import runner

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


def _warn_if_too_big(spec) -> None:
    """Before launch: say so when the memory estimate does not fit in the device's free memory (never blocks)."""
    from core.perf.estimate import exceeds_free_memory, job_estimate_with_time

    try:
        too_big = exceeds_free_memory(spec, job_estimate_with_time(spec))
    except Exception as err:  # the estimate is advice; a model it cannot read is reported by the run itself
        print(f"note: no memory estimate ({type(err).__name__}: {err})", file=sys.stderr)
        return
    if too_big:
        print(f"warning: the estimated peak memory ({too_big[0] / 2**20:,.0f} MiB) exceeds the free memory "
              f"({too_big[1] / 2**20:,.0f} MiB); the run may run out of memory", file=sys.stderr)


def _find_run(args):
    from core.runs.history import RunNotFound, find_run

    try:
        return find_run(args.workspace, args.run)
    except RunNotFound as err:
        print(f"error: {err}", file=sys.stderr)
        return None


RUN_COLUMNS = (  # (heading, width, value of a history.RunRow)
    ("run", 30, lambda r: r.name),
    ("state", 9, lambda r: r.state + (f" #{r.queue_position}" if r.queue_position else "")),
    ("method", 8, lambda r: r.method),
    ("started", 16, lambda r: time.strftime("%Y-%m-%d %H:%M", time.localtime(r.started_at)) if r.started_at else ""),
    ("time", 8, lambda r: r.duration_text),
    ("steps", 9, lambda r: f"{r.step}/{r.total_steps}" if r.total_steps else ""),
    ("loss", 7, lambda r: _figure(r.final_loss)),
    ("eval", 7, lambda r: _figure(r.best_eval_loss)),
    ("tok/s", 7, lambda r: _figure(r.tokens_per_second, ".0f")),
    ("peak MB", 8, lambda r: _figure(r.peak_memory_mb, ".0f")),
    ("adapter MB", 10, lambda r: _figure(r.adapter_bytes / 1e6 if r.adapter_bytes else None, ".1f")),
    ("reason", 0, lambda r: r.reason or ""),
)


def _figure(value, spec: str = ".4g") -> str:
    return "" if value is None else format(value, spec)


def cmd_runs(args) -> int:
    """Every run and queued job of the workspace: a table, or JSON objects with --json."""
    import json

    from core.runs import history, scheduler

    scheduler.ensure_running(args.workspace)  # jobs waiting and no scheduler (after a restart): start one
    rows = history.all_rows(args.workspace)
    if args.json:
        print(json.dumps([row.to_json() for row in rows], indent=1))
        return 0
    print("  ".join(f"{head:<{width}}" if width else head for head, width, _ in RUN_COLUMNS).rstrip())
    for row in rows:
        print("  ".join(f"{value(row):<{width}.{width}}" if width else value(row)
                        for _, width, value in RUN_COLUMNS).rstrip())
    return 0


def cmd_queue(args) -> int:
    """Add a job to the workspace's queue; the scheduler starts it when the devices it needs are free."""
    from core.runs import queue, scheduler
    from core.spec import dump_spec

    spec = _load_job(args, launch=True)
    if spec is None:
        return 2
    entry = queue.add(args.workspace, dump_spec(spec))
    scheduler.ensure_running(args.workspace)
    print(f"queued as {entry.entry_id}, position {entry.position}", file=sys.stderr)
    print(entry.path)
    return 0


def cmd_resume(args) -> int:
    from core.runs import resume

    run = _find_run(args)
    if run is None:
        return 2
    step, code = _launched(lambda: resume.resume(run, args.workspace))
    if step is None:
        return code
    print(f"resuming {run.run_id} from step {step}", file=sys.stderr)
    if args.detach:
        print(run.path)
        return 0
    return _follow(run)


def cmd_stop(args) -> int:
    from core.runs import queue, runner

    waiting = [e for e in queue.entries(args.workspace) if e.entry_id == args.run]
    if waiting:  # a job that has not started yet: stopping it takes it off the queue
        try:
            queue.remove(args.workspace, args.run)
        except queue.QueueError as err:  # it started between the two looks: stop it as a run below
            print(f"note: {err}", file=sys.stderr)
        else:
            print(f"removed {args.run} from the queue; it never started", file=sys.stderr)
            return 0
    run = _find_run(args)
    if run is None:
        return 2
    if not run.is_active():
        print(f"error: run {run.run_id} is {run.status()['state']}, not running", file=sys.stderr)
        return 1
    if args.kill:
        ended = runner.kill(run, args.grace)
        how = {"terminated": "ended on SIGTERM", "killed": f"needed SIGKILL after {args.grace:g} s",
               "gone": "had already ended"}[ended]
        print(f"killed {run.run_id}: its process group {how}; it resumes from its last checkpoint", file=sys.stderr)
    else:
        runner.stop(run)
        print(f"asked {run.run_id} to stop: it saves a checkpoint and its adapter after the current step",
              file=sys.stderr)
    print(run.path)
    return 0


def cmd_serve(args) -> int:
    """Serve the UI; off a loopback address only with a login (see core/auth.py)."""
    from core.safety.login import AuthError, credentials_for, serve_refusal

    try:
        credentials = credentials_for(args.auth_file)
    except AuthError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    refusal = serve_refusal(args.host, credentials)
    if refusal:
        print(f"error: {refusal}", file=sys.stderr)
        return 2
    roots = [("--data-root", p) for p in args.data_roots] + [("--export-root", p) for p in args.export_roots]
    missing = [f"{flag} {path}: not a folder" for flag, path in roots if not Path(path).expanduser().is_dir()]
    if missing:
        print("error: " + "\n       ".join(missing), file=sys.stderr)
        return 2
    from webui.app import serve

    serve(host=args.host, port=args.port, workspace=args.workspace, credentials=credentials,
          data_roots=args.data_roots, export_roots=args.export_roots, allow_remote_code=args.allow_remote_code)
    return 0


def cmd_passwd(args) -> int:
    """Print a login-file line for USER; the password is read from the terminal (asked twice) or from stdin."""
    import getpass

    from core.safety.login import AuthError, check_user_name, login_line

    try:
        check_user_name(args.user)
        if sys.stdin.isatty():
            password = getpass.getpass(f"password for {args.user}: ")
            if getpass.getpass("again: ") != password:
                print("error: the two passwords differ", file=sys.stderr)
                return 2
        else:
            password = sys.stdin.readline().rstrip("\r\n")
        print(login_line(args.user, password))
    except AuthError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


def cmd_bench(args) -> int:
    from core.perf.bench import run_benchmark

    spec = _load_job(args, launch=True)
    if spec is None:
        return 2
    return run_benchmark(spec, args.workspace, against=args.against, repeats=args.repeat, grid=args.grid)


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
    from core.perf.estimate import exceeds_free_memory, job_estimate_with_time, summary_lines

    est = job_estimate_with_time(spec, counts)
    t = spec.train
    print(f"estimate for batch {t.batch_size} x {spec.data.max_length} tokens (every row at max length), "
          f"gradient checkpointing {t.gradient_checkpointing}{' (counted as off)' if t.gradient_checkpointing == 'auto' else ''}:")
    for line in summary_lines(est):
        print(f"  {line}")
    too_big = exceeds_free_memory(spec, est)
    if too_big:
        print(f"warning: the estimated peak ({too_big[0] / 2**20:,.0f} MiB) exceeds the free memory "
              f"({too_big[1] / 2**20:,.0f} MiB)", file=sys.stderr)
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


def cmd_k8s(args) -> int:
    from core.deploy.k8s import ManifestError, manifest_text, manifests
    from core.runs.folder import write_atomic

    spec = _load_job(args)  # the cluster's machines are checked there, at start, not here
    if spec is None:
        return 2
    name = args.name or Path(args.job).stem
    try:
        documents = manifests(spec, nodes=args.nodes, gpus_per_node=args.gpus_per_node, image=args.image, name=name,
                              pvc=args.pvc, namespace=args.namespace, workdir=args.workdir)
    except ManifestError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except ValueError as err:  # SpecError: the job's rules refuse the cluster layout (e.g. QLoRA under fsdp)
        print(f"error: the job cannot run as {args.nodes} node(s) x {args.gpus_per_node} GPU(s):\n{err}", file=sys.stderr)
        return 2
    out = Path(args.out or f"{documents[1]['metadata']['name']}-pytorchjob.yaml")
    write_atomic(out, manifest_text(documents))
    print(f"apply with: kubectl apply -f {out}", file=sys.stderr)
    if not args.pvc:
        print("note: without --pvc the run folder (adapter, metrics, log) is lost when the master pod is deleted",
              file=sys.stderr)
    print(out)
    return 0


def _server_args(parser: argparse.ArgumentParser, suppress: bool) -> None:
    """The serve options, on the bare command and on `serve`. Below `serve` their default is "not given",
    so they do not undo the same option given before the command."""
    from core.safety.login import AUTH_FILE_ENV

    def default(value):
        return argparse.SUPPRESS if suppress else value

    parser.add_argument("--host", default=default("127.0.0.1"),
                        help="address to serve on (default 127.0.0.1); any non-loopback address needs --auth-file")
    parser.add_argument("--port", type=int, default=default(7860), help="port to serve on (default 7860)")
    parser.add_argument("--auth-file", default=default(None), metavar="FILE",
                        help=f"login file of user:hash lines made by `app.py passwd USER` (default: ${AUTH_FILE_ENV}); "
                             "with it every page and API call needs a login")
    parser.add_argument("--data-root", dest="data_roots", action="append", default=default([]), metavar="DIR",
                        help="a folder the UI may read datasets from, besides the workspace and the bundled data "
                             "(repeatable)")
    parser.add_argument("--export-root", dest="export_roots", action="append", default=default([]), metavar="DIR",
                        help="a folder the UI may write exports to, besides <workspace>/exports (repeatable)")
    parser.add_argument("--allow-remote-code", action="store_true", default=default(False),
                        help="let jobs started in the UI set model.trust_remote_code, running code shipped in model "
                             "folders (off: such jobs are refused)")


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
    _server_args(server, suppress=True)

    parser = argparse.ArgumentParser(prog="app.py", description="LoRA Workbench. Without a command it serves the web UI.")
    _server_args(parser, suppress=False)
    parser.add_argument("--workspace", type=Path, default=None, help=WORKSPACE_HELP)
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("serve", parents=[server, workspace], help="serve the web UI (the default)")
    passwd = sub.add_parser("passwd", help="print a login-file line (user:password hash) for serve --auth-file")
    passwd.add_argument("user", help="the user name; the password is asked for (or read from stdin)")
    train = sub.add_parser("train", parents=[workspace], help="train a job in the foreground")
    _job_args(train)
    train.add_argument("--print-node-command", action="store_true",
                       help="print the commands that start this job on its other nodes (runtime.nodes > 1), "
                            "and train nothing")
    bench = sub.add_parser("bench", parents=[workspace], help="measure throughput, memory and MFU for a job")
    _job_args(bench)
    bench.add_argument("--against", choices=["llamafactory"], default=None,
                       help="also run this other tool on the same job and data, side by side, and print the ratios")
    bench.add_argument("--repeat", type=int, default=2, help="pairs of runs for --against (default 2)")
    bench.add_argument("--grid", action="store_true",
                       help="tokens/s and peak memory at max length 128, 512, 2048 (packed) x batch 1, 8, 32")
    _job_args(sub.add_parser("params", parents=[workspace],
                             help="count trainable and total parameters without loading weights"))
    data = sub.add_parser("data", help="dataset tools").add_subparsers(dest="data_command", required=True)
    check = data.add_parser("check", parents=[workspace], help="validate a dataset and list every problem with its line")
    check.add_argument("dataset", help="a file path, a registry name, or several separated by commas")
    check.add_argument("--registry", default="", help="dataset_info.json to resolve names (default: the bundled one)")
    k8s = sub.add_parser("k8s", parents=[workspace],
                         help="write a Kubeflow PyTorchJob manifest (and a ConfigMap with the job) that trains it on a cluster")
    _job_args(k8s)
    k8s.add_argument("--nodes", type=int, required=True, help="pods, one per machine (node)")
    k8s.add_argument("--gpus-per-node", type=int, required=True, help="GPUs each pod asks for; one process per GPU")
    k8s.add_argument("--image", required=True, help="container image holding the workbench and its Python packages")
    k8s.add_argument("--pvc", default=None, help="PersistentVolumeClaim mounted as the master's workspace, where "
                                                 "the run folder lands (default: none; the run is lost with the pod)")
    k8s.add_argument("--name", default=None, help="name of the PyTorchJob (default: the job file's name)")
    k8s.add_argument("--namespace", default=None, help="namespace of both resources (default: kubectl's)")
    k8s.add_argument("--workdir", default="/workbench", help="the project folder inside the image (default /workbench)")
    k8s.add_argument("--out", default=None, help="manifest file to write (default: NAME-pytorchjob.yaml here)")
    runs = sub.add_parser("runs", parents=[workspace], help="list every run and queued job of the workspace")
    runs.add_argument("--json", action="store_true",
                      help="print a JSON list of objects (run_id, path, state, reason, step, total_steps, started_at...)")
    _job_args(sub.add_parser("queue", parents=[workspace],
                             help="add a job to the queue; it starts when the runs before it are done"))
    resume = sub.add_parser("resume", parents=[workspace],
                            help="continue a failed or stopped run from its last checkpoint, in the same folder")
    resume.add_argument("run", help="a run id (or its start) from `app.py runs`, or a run folder")
    resume.add_argument("--detach", action="store_true", help="return at once instead of following the run")
    stop = sub.add_parser("stop", parents=[workspace], help="stop a run after its current step, saving it (a queued job leaves the queue)")
    stop.add_argument("run", help="a run id (or its start) from `app.py runs`, or a run folder")
    stop.add_argument("--kill", action="store_true",
                      help="end its whole process group now: SIGTERM, then SIGKILL after --grace seconds; it stays "
                           "resumable from its last checkpoint")
    stop.add_argument("--grace", type=float, default=DEFAULT_GRACE_S,
                      help=f"seconds between SIGTERM and SIGKILL with --kill (default {DEFAULT_GRACE_S:g})")
    export = sub.add_parser("export", parents=[workspace],
                            help="merge a run's adapter into its base and write a model folder")
    add_option_flags(export, ExportOptions, positional=EXPORT_POSITIONAL)
    sweep_command.add_parsers(sub, workspace)
    evaluate = sub.add_parser("eval", parents=[workspace],
                              help="score a run against its base on held-out data and lm-eval benchmarks")
    add_option_flags(evaluate, EvalOptions, positional=EVAL_POSITIONAL)
    return parser


def main(argv: list[str], own_process: bool = False) -> int:
    """Run one command. `own_process`: this process runs nothing else afterwards (app.py's entry point), so
    process-wide settings for the command's job may be made; a caller that goes on (a test) leaves it False."""
    args = build_parser().parse_args(argv)
    args.own_process = own_process
    command = args.command or "serve"
    args.workspace = use_workspace(args.workspace)
    keep_library_output_in(args.workspace / "logs" / f"{command}.log")
    if command == "passwd":  # touches no workspace
        return cmd_passwd(args)
    handlers = {"serve": cmd_serve, "train": cmd_train, "bench": cmd_bench, "params": cmd_params,
                "data": cmd_data, "export": cmd_export, "runs": cmd_runs, "queue": cmd_queue,
                "resume": cmd_resume, "stop": cmd_stop, "k8s": cmd_k8s,
                "sweep": sweep_command.cmd_sweep, "sweeps": sweep_command.cmd_sweeps, "eval": cmd_eval}
    return handlers[command](args)
