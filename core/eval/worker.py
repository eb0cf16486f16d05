"""The evaluation process: `python -m core.eval.worker JOB_FOLDER`.

Loads the run's base model with its adapter once and scores the held-out data with the adapter off (base)
and on (tuned); then, when asked, runs an lm-eval benchmark on both. Each result is saved whole in the run
folder only when it is complete, so a cancelled or failed evaluation leaves no half result behind.
"""
from __future__ import annotations

import os
import sys
import threading
import time
import traceback
from pathlib import Path

from core.eval.evaluate import Cancelled
from core.eval.job import EvalJob

# Each stage as status.json says it: `stage` in English (the CLI's progress bar, the log), and `stage_key`
# with `stage_values` so a page can say it in its own language.
STAGES = {
    "load": "loading base model and adapter",
    "score": "scoring {which} on {dataset}",
    "benchmark": "lm-eval {task} on {which}",
    "done": "done",
    "cancelled": "cancelled",
}


def stage_fields(key: str, **values) -> dict:
    return {"stage": STAGES[key].format(**values), "stage_key": key, "stage_values": values}


def end_when_cancelled(job: EvalJob, stop: threading.Event) -> None:
    """lm-eval cannot be asked to stop between documents, so while it runs, Cancel ends this process here.
    Nothing is lost: a benchmark's result is saved only once it is complete."""
    while not stop.wait(0.5):
        if job.cancel_requested():
            job.write_status(state="cancelled", ended_at=time.time(), **stage_fields("cancelled"))
            print("[eval] cancelled during the benchmark; its result was not saved", flush=True)
            os._exit(1)


def evaluate_run(job: EvalJob, options) -> list[str]:
    """Every result this job asked for, saved; returns their file paths."""
    from core.eval import benchmark, heldout, metrics, results
    from core.eval.evaluate import evaluate
    from core.models.adapter import check_run, load_run_model
    from core.models.source import resolve_model

    run = check_run(options.run)
    modes = ("base",) if options.base else ("base", "tuned")
    saved = []
    if options.dataset or not options.benchmark:
        name, samples = heldout.held_out_samples(run, options.dataset)
        if options.max_samples:
            samples = samples[: options.max_samples]
        job.write_status(progress=0.02, **stage_fields("load"))
        model, tokenizer, spec = load_run_model(run, "cpu")
        span = 0.9 if options.benchmark else 0.98

        def progress(fraction: float, text: str) -> None:
            which = text.split(":")[0]
            job.write_status(progress=0.02 + span * fraction, **stage_fields("score", which=which, dataset=name))

        result = evaluate(model, tokenizer, spec, samples, name=name, mode=metrics.match_mode(options.match, name),
                          max_new_tokens=options.max_new_tokens, modes=modes, progress=progress,
                          cancelled=job.cancel_requested)
        result.update(run=str(run.path), run_id=run.run_id, source=options.dataset or heldout.EVAL_SPLIT)
        saved.append(str(results.save(run, name, result)))
        print(f"[eval] saved {saved[-1]}", flush=True)
        del model
    if options.benchmark:
        from core.spec import load_spec

        spec = load_spec(str(run.job))
        model_path = str(resolve_model(spec.model.path, convert=True))
        stop = threading.Event()
        threading.Thread(target=end_when_cancelled, args=(job, stop), daemon=True).start()
        scores = {}
        for i, which in enumerate(modes):
            if job.cancel_requested():
                raise Cancelled()
            job.write_status(progress=0.92 + 0.03 * i, **stage_fields("benchmark", task=options.benchmark, which=which))
            scores[which] = benchmark.run_lm_eval(model_path, str(run.adapter_dir), str(run.adapter_dir)
                                                  if which == "tuned" else None, options.benchmark, options.limit)
        stop.set()
        result = {"benchmark": options.benchmark, "tasks": benchmark.task_names(options.benchmark),
                  "limit": options.limit, "run": str(run.path), "run_id": run.run_id, "created_at": time.time(),
                  **benchmark.compare(scores["base"], scores.get("tuned"))}
        name = results.BENCHMARK_PREFIX + (Path(options.benchmark).stem if options.benchmark not in benchmark.BUNDLED
                                           else options.benchmark)
        saved.append(str(results.save(run, name, result)))
        print(f"[eval] saved {saved[-1]}", flush=True)
    return saved


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m core.eval.worker EVAL_JOB_FOLDER", file=sys.stderr)
        return 2
    job = EvalJob(Path(argv[0]).resolve())
    job.write_status(state="running", pid=os.getpid(), started_at=time.time())
    try:
        files = evaluate_run(job, job.options())
    except Cancelled:
        job.write_status(state="cancelled", ended_at=time.time(), **stage_fields("cancelled"))
        print("[eval] cancelled; nothing was saved", flush=True)
        return 1
    except BaseException as err:  # report every failure, then exit non-zero
        traceback.print_exc()
        job.mark_failed(err)
        return 1
    job.write_status(state="completed", ended_at=time.time(), progress=1.0, result={"files": files},
                     **stage_fields("done"))
    print("[eval] completed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
