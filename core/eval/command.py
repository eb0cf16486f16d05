"""`app.py eval RUN [--dataset NAME|PATH] [--base] [--benchmark TASK] ...`: the same evaluation job the
Evaluate tab starts, followed with a progress bar, its saved results printed as tables."""
from __future__ import annotations

EVAL_POSITIONAL = ("run",)


def fmt(value, digits: int = 3) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def clip(text: str, width: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[: width - 1] + "…"


def dataset_report(result: dict) -> list[str]:
    """A dataset result as terminal lines: the scores of each model, then the sample table."""
    models = result["models"]
    names = list(models)
    keys = ("loss", "perplexity", "exact_match", "contains", "rouge_l")
    lines = [f"{result['dataset']}: {result['samples']} samples, {result['answered']} answered greedily "
             f"(match: {result['match']})", f"  {'':12}" + "".join(f"{n:>12}" for n in names)]
    lines += [f"  {k:12}" + "".join(f"{fmt(models[n].get(k)):>12}" for n in names) for k in keys]
    if result.get("verdicts"):
        v = result["verdicts"]
        lines.append(f"  tuned against base: {v['better']} better, {v['worse']} worse, {v['same']} same")
    lines.append("")
    for row in result["rows"]:
        lines.append(f"  Q: {clip(row['prompt'], 100)}")
        lines.append(f"     expected: {clip(row['reference'], 100)}")
        for n in names:
            lines.append(f"     {n + ':':9} {clip(row[n], 100)}")
        if row.get("verdict"):
            lines.append(f"     -> {row['verdict']}")
    return lines


def benchmark_report(result: dict) -> list[str]:
    lines = [f"lm-eval {result['benchmark']} ({', '.join(f'{t}: {n} documents' for t, n in result['documents'].items())})",
             f"  {'metric':48}{'base':>10}{'tuned':>10}{'difference':>12}"]
    for row in result["rows"]:
        diff = "-" if row["difference"] is None else f"{row['difference']:+.3f}"
        lines.append(f"  {clip(row['metric'], 48):48}{fmt(row['base']):>10}{fmt(row['tuned']):>10}{diff:>12}")
    return lines


def report(result: dict) -> list[str]:
    return benchmark_report(result) if "benchmark" in result else dataset_report(result)


def cmd_eval(args) -> int:
    import json
    from pathlib import Path

    from core.eval import job as eval_job
    from core.eval.options import EvalOptions, resolve
    from core.job_cli import follow, start_job
    from core.option_flags import options_from_flags

    job, code = start_job(lambda: eval_job.start(resolve(options_from_flags(
        EvalOptions, args, positional=EVAL_POSITIONAL), args.workspace), args.workspace), EVAL_POSITIONAL)
    if job is None:
        return code
    status = follow(job, "evaluation")
    if status is None:
        return 1
    for file in status["result"]["files"]:
        print("\n".join(report(json.loads(Path(file).read_text(encoding="utf-8")))))
        print(f"saved: {file}\n")
    return 0
