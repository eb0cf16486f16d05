"""The Export tab: merge a finished run into a model folder (optionally GGUF and an Ollama Modelfile).

Its controls are drawn from core.export.options.ExportOptions, the same declaration `app.py export`'s flags
come from. The export runs as its own process (core/export/job.py); this tab starts it, polls its status
file for the progress bar, and writes a cancel request when Cancel is pressed.
"""
from __future__ import annotations

import html
from pathlib import Path

import gradio as gr

from core.export import job as export_job
from core.export.options import ExportError, ExportOptions, resolve
from core.options import OptionsError, build_options
from core.runs.launch import LaunchError
from core.runs.views import pick_run, usable_runs
from core.safety.access import AccessPolicy
from webui import i18n
from webui.form import FieldForm, option_problems
from webui.language import PageLanguage


def run_choices(workspace: Path) -> list[tuple[str, str]]:
    return [(run.run_id, str(run.path)) for run in usable_runs(workspace)]


def run_picker(workspace: Path, current, seen):
    """A run picker as it is now, on the newest usable run when one finished since it last looked; with the
    newest run, for the next look (the Export and Evaluate tabs)."""
    options = run_choices(workspace)
    paths = [path for _, path in options]
    return gr.update(choices=options, value=pick_run(current, seen, paths)), (paths[0] if paths else None)


def stage_text(status: dict, lang: str) -> str:
    """The export's stage in `lang`; the worker's English words when the locale has no entry for it."""
    key = f"export.stage.{status.get('stage_key') or status.get('stage')}"
    return i18n.text(key, lang, **(status.get("stage_values") or {})) if i18n.has_text(key) else status.get("stage") or ""


def progress_html(job_path: str | None, lang: str) -> str:
    if not job_path:
        return f"<div id='export-progress' data-state='idle'>{html.escape(i18n.text('export.idle', lang))}</div>"
    job = export_job.ExportJob(Path(job_path))
    status = job.status()
    state, percent = status["state"], 100 * (status.get("progress") or 0)
    body = html.escape(i18n.text("export.line", lang, state=i18n.text(f"export.state.{state}", lang),
                                 stage=stage_text(status, lang), percent=f"{percent:.0f}"))
    if state == "failed" and status.get("error"):
        err = status["error"]
        body += f"<div class='export-error'><b>{html.escape(str(err.get('kind')))}</b>: {html.escape(str(err.get('message')))}</div>"
    if state == "completed" and status.get("result"):
        result, out = status["result"], job.options().out
        body += "<div class='export-result'>" + html.escape(i18n.text(
            "export.done", lang, out=out, diff=f"{result['max_logit_diff']:.3g}", tol=f"{result['tolerance']:.3g}")) + "</div>"
        for item in result["gguf"]:
            verdict = i18n.text("export.gguf.same" if item["same_answer"] else "export.gguf.differs", lang)
            body += f"<div>{html.escape(item['file'])} ({item['size_mb']} MB): {html.escape(verdict)}</div>"
    return (f"<div id='export-progress' data-state='{state}'><progress max='100' value='{percent:.0f}' "
            f"style='width:100%'></progress><div>{body}</div></div>")


def refused(err: Exception) -> list:
    """Why an export did not start, as message parts: the option at fault under its label when there is one."""
    if isinstance(err, OptionsError):
        return option_problems("export", err.problems)
    head = ["**", ["export.refused"], "** "]
    if isinstance(err, ExportError) and err.option:
        return head + ["**", {"field": f"export.{err.option}"}, f"**: {html.escape(err.message)}"]
    return head + [html.escape(str(err))]


def build_export_tab(workspace: Path, page: PageLanguage, policy: AccessPolicy) -> dict:
    """Draw the tab. Exports go through `policy` (the server's access rule: runs from where it reads, output
    under the workspace's exports or an export root) and run one at a time per workspace."""
    lang = page.lang
    job_state = gr.State(None)
    seen_newest = gr.State(None)
    form = FieldForm(lang, lambda kind: run_choices(workspace) if kind == "run" else None)
    with gr.Row():
        with gr.Column(scale=4):
            form.render("export", ExportOptions, only=("run",))
        refresh = gr.Button(scale=1, **i18n.props("export-refresh", lang))
    form.render("export", ExportOptions, only=("out",))
    with gr.Row():
        form.render("export", ExportOptions, only=("shard_size", "dtype", "gguf", "ollama"))
    form.render("export", ExportOptions, only=("system",))
    with gr.Row():
        start = gr.Button(variant="primary", **i18n.props("export-start", lang))
        cancel = gr.Button(variant="stop", **i18n.props("export-cancel", lang))
    message = page.message("export-message")
    progress = gr.HTML(progress_html(None, lang), elem_id="export-progress-box")
    run = form.components["export.run"]

    def picker(current, seen):
        return run_picker(workspace, current, seen)

    def on_start(job_path, *values):
        if job_path and export_job.ExportJob(Path(job_path)).status()["state"] in export_job.ACTIVE:
            return job_path, [["export.busy"]]
        try:
            options = resolve(build_options(ExportOptions, form.group_values("export", list(values))), workspace)
            job = export_job.start(options, workspace, policy, exclusive=True)
        except export_job.ExportBusy:  # started by another page or an API call
            return job_path, [["export.busy"]]
        except (ValueError, LaunchError) as err:  # OptionsError, ExportError, RunNotReady; or no process could start
            return job_path, refused(err)
        return str(job.path), [["export.started", {"out": html.escape(job.options().out)}]]

    def on_cancel(job_path):
        if not job_path:
            return [["export.nothing"]]
        export_job.ExportJob(Path(job_path)).cancel()
        return [["export.cancelling"]]

    pick = (picker, [run, seen_newest], [run, seen_newest])
    refresh.click(*pick)
    start.click(on_start, [job_state, *form.group_inputs("export")], [job_state, message], api_name="export_start")
    cancel.click(on_cancel, [job_state], [message])
    timer = gr.Timer(1.0)
    timer.tick(progress_html, [job_state, page.language], [progress], show_progress="hidden")
    page.also(lambda lang_now, job_path: [progress_html(job_path, lang_now)], [job_state], [progress])
    # The page refreshes the picker when it loads, when this tab is opened and when a run ends.
    return {"pick": pick}
