"""The Export tab: merge a finished run into a model folder (optionally GGUF and an Ollama Modelfile).

The export runs as its own process (core/export/job.py); this tab starts it, polls its status
file for the progress bar, and writes a cancel request when Cancel is pressed.
"""
from __future__ import annotations

import html
from pathlib import Path

import gradio as gr

from core.export import job as export_job
from core.export.options import DTYPES, GGUF_TYPES, ExportOptions
from core.models.adapter import USABLE_STATES
from core.runs.folder import list_runs
from webui import i18n


def run_choices(workspace: Path) -> list[tuple[str, str]]:
    return [(r.run_id, str(r.path)) for r in list_runs(workspace)
            if r.status()["state"] in USABLE_STATES and (r.adapter_dir / "adapter_config.json").is_file()]


def progress_html(job_path: str | None, lang: str) -> str:
    if not job_path:
        return f"<div id='export-progress' data-state='idle'>{html.escape(i18n.text('export.idle', lang))}</div>"
    job = export_job.ExportJob(Path(job_path))
    status = job.status()
    state, percent = status["state"], 100 * (status.get("progress") or 0)
    body = html.escape(i18n.text("export.line", lang, state=i18n.text(f"export.state.{state}", lang),
                                 stage=status.get("stage") or "", percent=f"{percent:.0f}"))
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


def build_export_tab(workspace: Path, lang: str = "en") -> dict:
    lang_state = gr.State(lang)
    job_state = gr.State(None)
    runs = run_choices(workspace)
    with gr.Row():
        run = gr.Dropdown(choices=runs, value=runs[0][1] if runs else None, label=i18n.text("export.run", lang),
                          elem_id="export-run", scale=4)
        refresh = gr.Button(i18n.text("chat.refresh", lang), elem_id="export-refresh", scale=1)
    out = gr.Textbox(label=i18n.text("export.out", lang), info=i18n.text("export.out.help", lang), elem_id="export-out")
    with gr.Row():
        shard = gr.Textbox(value="2GB", label=i18n.text("export.shard_size", lang), elem_id="export-shard-size")
        dtype = gr.Dropdown(choices=list(DTYPES), value="float32", label=i18n.text("export.dtype", lang),
                            info=i18n.text("export.dtype.help", lang), elem_id="export-dtype")
        gguf = gr.CheckboxGroup(choices=list(GGUF_TYPES), value=[], label=i18n.text("export.gguf", lang),
                                info=i18n.text("export.gguf.help", lang), elem_id="export-gguf")
        ollama = gr.Checkbox(value=False, label=i18n.text("export.ollama", lang), elem_id="export-ollama")
    system = gr.Textbox(label=i18n.text("export.system", lang), elem_id="export-system")
    with gr.Row():
        start = gr.Button(i18n.text("export.start", lang), variant="primary", elem_id="export-start")
        cancel = gr.Button(i18n.text("export.cancel", lang), variant="stop", elem_id="export-cancel")
    message = gr.Markdown("", elem_id="export-message")
    progress = gr.HTML(progress_html(None, lang), elem_id="export-progress-box")

    def on_refresh(current):
        options = run_choices(workspace)
        return gr.update(choices=options, value=current if current in [v for _, v in options] else
                         (options[0][1] if options else None))

    def on_start(state, lang_now, run_path, out_dir, shard_size, dtype_name, gguf_types, ollama_on, system_prompt):
        if state and export_job.ExportJob(Path(state)).status()["state"] in export_job.ACTIVE:
            return state, i18n.text("export.busy", lang_now)
        if not out_dir and run_path:
            out_dir = str(workspace / "exports" / f"{Path(run_path).name}-merged")
        options = ExportOptions(run=run_path or "", out=out_dir or "", shard_size=shard_size or "", dtype=dtype_name,
                                gguf=list(gguf_types or []), ollama=bool(ollama_on), system=system_prompt or "")
        try:
            job = export_job.start(options, workspace)
        except ValueError as err:  # ExportError, RunNotReady: nothing was started or written
            return state, f"**{i18n.text('export.refused', lang_now)}** {html.escape(str(err))}"
        return str(job.path), i18n.text("export.started", lang_now, out=job.options().out)

    def on_cancel(state, lang_now):
        if not state:
            return i18n.text("export.nothing", lang_now)
        export_job.ExportJob(Path(state)).cancel()
        return i18n.text("export.cancelling", lang_now)

    refresh.click(on_refresh, [run], [run])
    start.click(on_start, [job_state, lang_state, run, out, shard, dtype, gguf, ollama, system], [job_state, message])
    cancel.click(on_cancel, [job_state, lang_state], [message])
    timer = gr.Timer(1.0)
    timer.tick(progress_html, [job_state, lang_state], [progress], show_progress="hidden")
    return {"lang_state": lang_state, "refresh": (on_refresh, [run], [run])}
