"""The Evaluate tab: score a finished run against its base on held-out data (and an lm-eval benchmark), with a
progress bar and Cancel, and show the run's saved results: scores side by side and the sample table.

Its controls are drawn from core.eval.options.EvalOptions, the declaration `app.py eval`'s flags come from.
The evaluation runs as its own process (core/eval/job.py); results are read from `<run>/eval/*.json`.
"""
from __future__ import annotations

import html
from pathlib import Path

import gradio as gr

from core.eval import job as eval_job
from core.eval import results
from core.eval.options import EvalError, EvalOptions, resolve
from core.options import OptionsError, build_options
from core.runs.folder import RunFolder
from core.runs.launch import LaunchError
from webui import i18n
from webui.export_tab import run_choices, run_picker
from webui.form import FieldForm, option_problems
from webui.language import PageLanguage

SCORES = ("loss", "perplexity", "exact_match", "contains", "rouge_l")


def esc(value) -> str:
    return html.escape(str(value))


def number(value) -> str:
    return "–" if value is None else f"{value:.3f}" if isinstance(value, float) else esc(value)


def progress_html(job_path: str | None, lang: str) -> str:
    if not job_path:
        return f"<div id='eval-progress' data-state='idle'>{esc(i18n.text('eval.idle', lang))}</div>"
    status = eval_job.EvalJob(Path(job_path)).status()
    state, percent = status["state"], 100 * (status.get("progress") or 0)
    key = f"eval.stage.{status.get('stage_key') or status.get('stage')}"
    values = dict(status.get("stage_values") or {})
    if values.get("which"):  # base / tuned, said in the page's language
        values["which"] = i18n.text(f"eval.model.{values['which']}", lang)
    stage = i18n.text(key, lang, **values) if i18n.has_text(key) else status.get("stage") or ""
    body = esc(i18n.text("eval.line", lang, state=i18n.text(f"eval.state.{state}", lang), stage=stage,
                         percent=f"{percent:.0f}"))
    if state == "failed" and status.get("error"):
        err = status["error"]
        body += f"<div class='eval-error'><b>{esc(err.get('kind'))}</b>: {esc(err.get('message'))}</div>"
    return (f"<div id='eval-progress' data-state='{state}'><progress max='100' value='{percent:.0f}' "
            f"style='width:100%'></progress><div>{body}</div></div>")


def dataset_html(name: str, result: dict, lang: str) -> str:
    models = list(result["models"])
    head = "".join(f"<th>{esc(i18n.text(f'eval.model.{m}', lang))}</th>" for m in models)
    rows = "".join(f"<tr><td>{esc(i18n.text(f'eval.score.{k}', lang))}</td>"
                   + "".join(f"<td>{number(result['models'][m].get(k))}</td>" for m in models) + "</tr>" for k in SCORES)
    title = i18n.text("eval.dataset_title", lang, dataset=result["dataset"], samples=result["samples"],
                      match=result["match"])
    out = (f"<h4>{esc(title)}</h4>"
           f"<table class='eval-scores'><tr><th></th>{head}</tr>{rows}</table>")
    if result.get("verdicts"):
        out += f"<p>{esc(i18n.text('eval.verdicts', lang, **result['verdicts']))}</p>"
    cols = ("prompt", "reference", *models) + (("verdict",) if result.get("verdicts") else ())
    table = "".join(f"<th>{esc(i18n.text(f'eval.col.{c}', lang))}</th>" for c in cols)
    for row in result["rows"]:
        cells = [esc(row["prompt"]), esc(row["reference"]), *(esc(row[m]) for m in models)]
        if row.get("verdict"):
            cells.append(f"<span data-verdict='{row['verdict']}'>{esc(i18n.text('eval.verdict.' + row['verdict'], lang))}</span>")
        table += "<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"
    return out + f"<table class='eval-samples' data-result='{esc(name)}'><tr>{table}</tr></table>"


def benchmark_html(result: dict, lang: str) -> str:
    head = "".join(f"<th>{esc(i18n.text(k, lang))}</th>" for k in ("eval.col.metric", "eval.model.base",
                                                                     "eval.model.tuned", "eval.col.difference"))
    rows = ""
    for r in result["rows"]:
        diff = "–" if r["difference"] is None else f"{r['difference']:+.3f}"
        rows += (f"<tr><td>{esc(r['metric'])}</td><td>{number(r['base'])}</td><td>{number(r['tuned'])}</td>"
                 f"<td>{diff}</td></tr>")
    title = i18n.text("eval.benchmark_title", lang, task=result["benchmark"],
                      documents=", ".join(f"{t}: {n}" for t, n in result["documents"].items()))
    return f"<h4>{esc(title)}</h4><table class='eval-benchmark'><tr>{head}</tr>{rows}</table>"


def results_html(run_path: str | None, lang: str) -> str:
    saved = results.load_all(RunFolder(Path(run_path))) if run_path else {}
    if not saved:
        return f"<div id='eval-results' data-count='0'>{esc(i18n.text('eval.no_results', lang))}</div>"
    parts = [benchmark_html(r, lang) if "benchmark" in r else dataset_html(name, r, lang) for name, r in saved.items()]
    return f"<div id='eval-results' data-count='{len(saved)}'>{''.join(parts)}</div>"


def refused(err: Exception) -> list:
    if isinstance(err, OptionsError):
        return option_problems("eval", err.problems)
    head = ["**", ["eval.refused"], "** "]
    if isinstance(err, EvalError) and err.option:
        return head + ["**", {"field": f"eval.{err.option}"}, f"**: {html.escape(err.message)}"]
    return head + [html.escape(str(err))]


def build_eval_tab(workspace: Path, page: PageLanguage, policy=None) -> dict:
    lang = page.lang
    job_state = gr.State(None)
    seen_newest = gr.State(None)
    form = FieldForm(lang, lambda kind: run_choices(workspace) if kind == "run" else None)
    with gr.Row():
        with gr.Column(scale=4):
            form.render("eval", EvalOptions, only=("run",))
        refresh = gr.Button(scale=1, **i18n.props("eval-refresh", lang))
    with gr.Row():
        form.render("eval", EvalOptions, only=("dataset", "base", "match"))
    with gr.Row():
        form.render("eval", EvalOptions, only=("max_samples", "max_new_tokens"))
    with gr.Row():
        form.render("eval", EvalOptions, only=("benchmark", "limit"))
    with gr.Row():
        start = gr.Button(variant="primary", **i18n.props("eval-start", lang))
        cancel = gr.Button(variant="stop", **i18n.props("eval-cancel", lang))
    message = page.message("eval-message")
    progress = gr.HTML(progress_html(None, lang), elem_id="eval-progress-box")
    shown = gr.HTML(results_html(None, lang), elem_id="eval-results-box")
    run = form.components["eval.run"]

    def picker(current, seen):
        return run_picker(workspace, current, seen)

    def on_start(job_path, *values):
        if job_path and eval_job.EvalJob(Path(job_path)).status()["state"] in eval_job.ACTIVE:
            return job_path, [["eval.busy"]]
        try:
            options = resolve(build_options(EvalOptions, form.group_values("eval", list(values))), workspace)
            job = eval_job.start(options, workspace, policy)
        except (ValueError, LaunchError) as err:
            return job_path, refused(err)
        return str(job.path), [["eval.started", {"run": html.escape(Path(job.options().run).name)}]]

    def on_cancel(job_path):
        if not job_path or not eval_job.EvalJob(Path(job_path)).cancel():
            return [["eval.nothing"]]
        return [["eval.cancelling"]]

    def tick(job_path, run_path, lang_now, drawn_for):
        """The progress line; the results again when the job just ended (so they appear without a click)."""
        status = eval_job.EvalJob(Path(job_path)).status() if job_path else {"state": None}
        key = f"{job_path}:{status['state']}"
        if status["state"] in eval_job.FINAL and key != drawn_for:
            return progress_html(job_path, lang_now), results_html(run_path, lang_now), key
        return progress_html(job_path, lang_now), gr.update(), drawn_for

    drawn_for = gr.State(None)
    pick = (picker, [run, seen_newest], [run, seen_newest])
    refresh.click(*pick)
    run.change(results_html, [run, page.language], [shown], show_progress="hidden")
    start.click(on_start, [job_state, *form.group_inputs("eval")], [job_state, message])
    cancel.click(on_cancel, [job_state], [message])
    gr.Timer(1.0).tick(tick, [job_state, run, page.language, drawn_for], [progress, shown, drawn_for],
                       show_progress="hidden")
    page.also(lambda lang_now, job_path, run_path: [progress_html(job_path, lang_now), results_html(run_path, lang_now)],
              [job_state, run], [progress, shown])
    return {"pick": pick}
