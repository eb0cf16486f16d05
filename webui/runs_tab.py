"""The Runs tab: every run of the workspace (from this page, another one, the CLI or the queue) in a sortable
table; one run opened with its charts, job, log and failure reason, and what can be done to it (resume,
stop, kill, train further, load into the Train tab, rename, note, delete); the queue with its order; and
Compare, which overlays the curves of two or more runs and lists the settings in which their jobs differ.

Rules live in core/runs (history, queue, resume, compare, views); this file lays out and wires.
"""
from __future__ import annotations

import html
from pathlib import Path

import gradio as gr

from core.runs import compare, history, queue, resume, runner, scheduler
from core.runs.folder import RunFolder
from core.runs.views import RunActions, resume_marks
from core.spec import SpecError, load_spec, spec_from_dict
from webui import i18n
from webui.charts import compare_figure, training_figure
from webui.language import PageLanguage
from webui.run_text import duration_text, figure, megabytes, reason_html, state_text, when_text

LOG_LINES = 30

# (header key, cell of a history.RunRow in a language, column type)
COLUMNS = [
    ("runs.col.run", lambda r, lang: run_label(r), "str"),
    ("runs.col.state", lambda r, lang: state_text(r.state, lang) + (f" #{r.queue_position}" if r.queue_position else ""),
     "str"),
    ("runs.col.method", lambda r, lang: r.method, "str"),
    ("runs.col.model", lambda r, lang: Path(r.model).name or r.model, "str"),
    ("runs.col.dataset", lambda r, lang: r.dataset, "str"),
    ("runs.col.started", lambda r, lang: when_text(r.started_at), "str"),
    ("runs.col.duration", lambda r, lang: duration_text(r.duration_s), "str"),
    ("runs.col.steps", lambda r, lang: r.step, "number"),
    ("runs.col.final_eval", lambda r, lang: figure(r.final_eval_loss), "number"),
    ("runs.col.best_eval", lambda r, lang: figure(r.best_eval_loss), "number"),
    ("runs.col.final_loss", lambda r, lang: figure(r.final_loss), "number"),
    ("runs.col.tokens_per_second", lambda r, lang: figure(r.tokens_per_second, 3), "number"),
    ("runs.col.peak_memory", lambda r, lang: figure(r.peak_memory_mb, 4), "number"),
    ("runs.col.adapter_size", lambda r, lang: megabytes(r.adapter_bytes, 2), "number"),
]
X_AXES = ["step", "tokens", "time"]
FINAL_FIGURES = [  # (label key, cell of a RunRow) in the Compare table, under the differing settings
    ("runs.compare.state", lambda r, lang: state_text(r.state, lang)),
    ("runs.compare.steps", lambda r, lang: f"{r.step}/{r.total_steps}"),
    ("runs.compare.final_loss", lambda r, lang: figure(r.final_loss)),
    ("runs.compare.best_eval", lambda r, lang: figure(r.best_eval_loss)),
    ("runs.compare.tokens_per_second", lambda r, lang: figure(r.tokens_per_second, 3)),
    ("runs.compare.peak_memory", lambda r, lang: figure(r.peak_memory_mb, 4)),
    ("runs.compare.duration", lambda r, lang: duration_text(r.duration_s)),
]


WIDTHS = [230, 90, 60, 110, 100, 125, 70, 55, 75, 75, 75, 60, 70, 75]  # px, one per column


def run_label(row: history.RunRow) -> str:
    """A run as the table and the pickers name it: its id, or its name with the id (so labels stay unique)."""
    return row.run_id if row.name == row.run_id else f"{row.name} ({row.run_id})"


def table_value(rows: list[history.RunRow], lang: str) -> dict:
    return {"headers": [i18n.text(key, lang) for key, _, _ in COLUMNS],
            "data": [[cell(row, lang) for _, cell, _ in COLUMNS] for row in rows]}


def run_choices(rows: list[history.RunRow]) -> list[tuple[str, str]]:
    return [(run_label(row), row.path) for row in rows if row.queue_position is None]


def queue_value(workspace: Path, lang: str) -> tuple[dict, list[tuple[str, str]]]:
    entries = queue.entries(workspace)
    facts = [history.job_facts(e.path) for e in entries]
    data = [[e.position, e.entry_id, f["method"], Path(f["model"]).name or f["model"], f["dataset"], when_text(e.added_at)]
            for e, f in zip(entries, facts)]
    headers = [i18n.text(k, lang) for k in ("runs.queue.position", "runs.col.run", "runs.col.method", "runs.col.model",
                                             "runs.col.dataset", "runs.queue.added")]
    return {"headers": headers, "data": data}, [(f"#{e.position} {e.entry_id}", e.entry_id) for e in entries]


def chart_titles(lang: str) -> dict[str, str]:
    keys = ["chart.loss", "chart.eval_loss", "chart.learning_rate", "chart.grad_norm", "chart.tokens_per_second",
            "chart.memory_mb", "chart.step", "chart.resumed"]
    return {k: i18n.text(k, lang) for k in keys}


def summary_html(run: RunFolder, status: dict, lang: str) -> str:
    """State, steps, attempts and the resume point of the open run, then its failure reason in plain words."""
    row = history.run_row(run)
    state = status["state"]
    parts = [i18n.text("runs.summary", lang, run=html.escape(row.name), state=state_text(state, lang),
                       step=row.step, total=row.total_steps or "?", duration=duration_text(row.duration_s) or "-")]
    attempts = status.get("attempts") or []
    if len(attempts) > 1:
        parts.append(i18n.text("runs.attempts", lang, count=len(attempts),
                               steps=", ".join(str(s) for s in resume_marks(status))))
    point = resume.resume_point(run)
    if row.resumable and point:
        parts.append(i18n.text("runs.resumable", lang, step=point[0]))
    if row.note:
        parts.append(f"📝 {html.escape(row.note)}")
    reason = reason_html(status, run.log_tail(8000), lang)
    body = "".join(f"<div>{p}</div>" for p in parts)
    return f"<div id='runs-open' data-state='{state}' data-run='{html.escape(run.run_id)}'>{body}{reason}</div>"


def build_runs_tab(workspace: Path, page: PageLanguage, train: dict, tabs: gr.Tabs) -> dict:
    """Draw the tab. `train` is what the Train tab returned (its form and method picker), `tabs` the page's
    tabs: loading a job switches to the Train tab with it in the form."""
    lang = page.lang
    rows = history.all_rows(workspace)
    with gr.Row():
        refresh = gr.Button(scale=0, **i18n.props("runs-refresh", lang))
    table = gr.Dataframe(value=table_value(rows, lang), interactive=False, datatype=[t for _, _, t in COLUMNS],
                         max_height=420, wrap=True, column_widths=WIDTHS, **i18n.props("runs-table", lang))
    with gr.Accordion(open=True, **i18n.props("runs-queue", lang)):
        queue_table, queue_picks = queue_value(workspace, lang)
        queue_view = gr.Dataframe(value=queue_table, interactive=False, max_height=240,
                                  **i18n.props("runs-queue-table", lang))
        with gr.Row():
            queue_pick = gr.Dropdown(choices=queue_picks, value=None, scale=3, **i18n.props("runs-queue-pick", lang))
            up = gr.Button(scale=1, **i18n.props("runs-queue-up", lang))
            down = gr.Button(scale=1, **i18n.props("runs-queue-down", lang))
            remove = gr.Button(scale=1, variant="stop", **i18n.props("runs-queue-remove", lang))
    with gr.Row():
        pick = gr.Dropdown(choices=run_choices(rows), value=None, scale=4, **i18n.props("runs-pick", lang))
    summary = gr.HTML("", elem_id="runs-summary")
    with gr.Row():
        resume_button = gr.Button(variant="primary", interactive=False, **i18n.props("runs-resume", lang))
        stop_button = gr.Button(interactive=False, **i18n.props("runs-stop", lang))
        kill_button = gr.Button(variant="stop", interactive=False, **i18n.props("runs-kill", lang))
        extend_button = gr.Button(interactive=False, **i18n.props("runs-extend", lang))
        load_button = gr.Button(interactive=False, **i18n.props("runs-load", lang))
    message = page.message("runs-message")
    with gr.Row():
        name = gr.Textbox(scale=3, **i18n.props("runs-name", lang))
        rename_button = gr.Button(scale=1, interactive=False, **i18n.props("runs-rename", lang))
        note = gr.Textbox(scale=5, **i18n.props("runs-note", lang))
        note_button = gr.Button(scale=1, interactive=False, **i18n.props("runs-save-note", lang))
    with gr.Row():
        delete_button = gr.Button(variant="stop", interactive=False, scale=0, **i18n.props("runs-delete", lang))
        confirm_button = gr.Button(variant="stop", visible=False, scale=0, **i18n.props("runs-delete-confirm", lang))
        cancel_button = gr.Button(visible=False, scale=0, **i18n.props("runs-delete-cancel", lang))
    charts = gr.Plot(training_figure([], chart_titles(lang)), **i18n.props("runs-charts", lang))
    job = gr.Code(language="yaml", interactive=False, **i18n.props("runs-job", lang))
    log = gr.Textbox(lines=12, max_lines=LOG_LINES, interactive=False, **i18n.props("runs-log", lang))

    with gr.Accordion(open=True, **i18n.props("runs-compare", lang)):
        with gr.Row():
            compare_pick = gr.Dropdown(choices=run_choices(rows), value=[], multiselect=True, scale=4,
                                       **i18n.props("runs-compare-pick", lang))
            x_axis = gr.Radio(choices=x_choices(lang), value="step", scale=2, **i18n.props("runs-compare-x", lang))
            compare_button = gr.Button(scale=1, variant="primary", **i18n.props("runs-compare-button", lang))
        compare_charts = gr.Plot(None, **i18n.props("runs-compare-charts", lang))
        compare_table = gr.Dataframe(value={"headers": [i18n.text("runs.compare.setting", lang)], "data": []},
                                     interactive=False, wrap=True, **i18n.props("runs-compare-table", lang))

    seen = gr.State(None)         # what the table showed at the last refresh, to redraw only on change
    opened = gr.State(None)       # (path, signature) of the open run as last drawn
    doomed = gr.State(None)       # the run whose deletion waits for confirmation

    # --- the table, the pickers and the queue -----------------------------------------------------------
    def lists(lang_now, current_pick, current_compare, current_queue):
        now = history.all_rows(workspace)
        choices = run_choices(now)
        paths = {p for _, p in choices}
        queue_data, queue_choices = queue_value(workspace, lang_now)
        return (table_value(now, lang_now),
                gr.update(choices=choices, value=current_pick if current_pick in paths else None),
                gr.update(choices=choices, value=[p for p in current_compare or [] if p in paths]),
                queue_data,
                gr.update(choices=queue_choices, value=current_queue if current_queue in {v for _, v in queue_choices}
                          else None))

    list_outputs = [table, pick, compare_pick, queue_view, queue_pick]

    def on_refresh(lang_now, current_pick, current_compare, current_queue):
        scheduler.ensure_running(workspace)  # jobs wait and no scheduler (after a restart): start one
        return lists(lang_now, current_pick, current_compare, current_queue)

    def on_tick(last, lang_now, current_pick, current_compare, current_queue):
        now = [row.to_json() for row in history.all_rows(workspace)]
        if now == last:
            return [last, *[gr.skip()] * len(list_outputs)]
        return [now, *lists(lang_now, current_pick, current_compare, current_queue)]

    # --- the open run ---------------------------------------------------------------------------------------
    def signature(run: RunFolder) -> tuple:
        stamps = []
        for path in (run.status_file, run.metrics_file, run.log_file):
            try:
                info = path.stat()
                stamps.append((info.st_size, info.st_mtime))
            except FileNotFoundError:
                stamps.append(None)
        return str(run.path), tuple(stamps)

    def draw(path, lang_now):
        """summary, charts, job, log, name, note and the buttons of the open run (everything empty when none)."""
        run = history.workspace_run(workspace, path)
        if run is None:
            off = gr.update(interactive=False)
            return (None, "", training_figure([], chart_titles(lang_now)), "", "", "", "", *[off] * 7)
        status = run.status()
        records, _ = run.read_metrics()
        acts = RunActions.of(run, status)
        buttons = [acts.resume, acts.stop, acts.kill, acts.extend, True, True, True]
        return (signature(run), summary_html(run, status, lang_now),
                training_figure(records, chart_titles(lang_now), resume_marks(status)),
                run.job.read_text(encoding="utf-8"),
                "\n".join(run.log_tail(16000).splitlines()[-LOG_LINES:]),
                status.get("name") or "", status.get("note") or "",
                *[gr.update(interactive=on) for on in buttons])

    action_buttons = [resume_button, stop_button, kill_button, extend_button, load_button, rename_button, note_button]
    detail_outputs = [opened, summary, charts, job, log, name, note, *action_buttons]

    def on_pick(path, lang_now):
        drawn = list(draw(path, lang_now))
        run = history.workspace_run(workspace, path)
        delete_ok = run is not None and RunActions.of(run, run.status()).delete
        return [*drawn, gr.update(interactive=delete_ok), gr.update(visible=False), gr.update(visible=False), None]

    def on_detail_tick(last, path, lang_now):
        run = history.workspace_run(workspace, path)
        if run is None or (last and tuple(last) == signature(run)):
            return [gr.skip()] * (len(detail_outputs) + 1)
        drawn = list(draw(path, lang_now))
        drawn[5:7] = [gr.skip(), gr.skip()]  # never overwrite a name or note being typed
        return [*drawn, gr.update(interactive=RunActions.of(run, run.status()).delete)]

    def on_select(evt: gr.SelectData):
        row = evt.row_value or []
        label = str(row[0]) if row else ""
        ref = label.rsplit(" (", 1)[1].rstrip(")") if label.endswith(")") else label  # "name (id)" or "id"
        try:
            return str(history.find_run(workspace, ref).path)
        except history.RunNotFound:
            return gr.skip()  # a queued job: it has no run folder yet

    # --- actions ------------------------------------------------------------------------------------------
    def picked_or_say(path):
        run = history.workspace_run(workspace, path)
        return run, (None if run else [["runs.pick_first"]])

    def on_resume(path):
        run, said = picked_or_say(path)
        if said:
            return said
        try:
            step = resume.resume(run, workspace)
        except resume.NotResumable as err:
            return ["**", ["runs.not_resumable"], f"** {html.escape(str(err))}"]
        except runner.RunnerBusy as err:
            return ["**", ["busy"], f"** {html.escape(str(err))}"]
        except runner.LaunchError as err:
            return ["**", ["launch_failed"], f"** {html.escape(str(err))}"]
        return [["runs.resuming", {"run": run.run_id, "step": step}]]

    def on_stop(path):
        run, said = picked_or_say(path)
        if said:
            return said
        if not run.is_active():
            return [["runs.not_active", {"run": run.run_id}]]
        runner.stop(run)
        return [["stopping", {"run": run.run_id}]]

    def on_kill(path):
        run, said = picked_or_say(path)
        if said:
            return said
        if not run.is_active():
            return [["runs.not_active", {"run": run.run_id}]]
        ended = runner.kill(run)
        return [[f"runs.killed.{ended}", {"run": run.run_id}]]

    form, method = train["form"], train["method"]
    load_outputs = [method, *form.inputs, tabs]
    nothing = [gr.skip()] * len(load_outputs)

    def job_into_form(data: dict, said: list):
        try:
            spec = spec_from_dict(data)
        except SpecError as err:
            return [*nothing, ["**", ["runs.job_unreadable"], f"** {html.escape(str(err))}"]]
        return [spec.method, *form.values_from(spec), gr.Tabs(selected="train"), said]

    def on_load(path):
        run, said = picked_or_say(path)
        if said:
            return [*nothing, said]
        try:
            data = load_spec(str(run.job)).to_dict()
        except SpecError as err:
            return [*nothing, ["**", ["runs.job_unreadable"], f"** {html.escape(str(err))}"]]
        return job_into_form(data, [["runs.loaded", {"run": run.run_id}]])

    def on_extend(path):
        run, said = picked_or_say(path)
        if said:
            return [*nothing, said]
        try:
            data = resume.continue_job(run)
        except (resume.NotResumable, SpecError) as err:
            return [*nothing, ["**", ["runs.job_unreadable"], f"** {html.escape(str(err))}"]]
        return job_into_form(data, [["runs.extending", {"run": run.run_id}]])

    def on_rename(path, new_name):
        run, said = picked_or_say(path)
        return said or [["runs.renamed", {"name": html.escape(history.rename(run, new_name))}]]

    def on_note(path, text):
        run, said = picked_or_say(path)
        if said:
            return said
        history.set_note(run, text)
        return [["runs.noted", {"run": run.run_id}]]

    def on_delete(path):
        run, said = picked_or_say(path)
        if said:
            return None, said, gr.skip(), gr.skip()
        if run.is_active():
            return None, [["runs.delete_active", {"run": run.run_id}]], gr.skip(), gr.skip()
        size = f"{history.folder_size(run.path) / 1e6:.1f}"
        return (str(run.path), [["runs.delete_confirm", {"run": run.run_id, "size": size}]],
                gr.update(visible=True), gr.update(visible=True))

    def on_confirm(path):
        hide = (gr.update(visible=False), gr.update(visible=False))
        run = history.workspace_run(workspace, path)
        if run is None:
            return None, [["runs.pick_first"]], *hide
        try:
            freed = history.delete(run)
        except history.RunBusy:
            return None, [["runs.delete_active", {"run": run.run_id}]], *hide
        return None, [["runs.deleted", {"run": run.run_id, "size": f"{freed / 1e6:.1f}"}]], *hide

    def on_cancel():
        return None, [], gr.update(visible=False), gr.update(visible=False)

    # --- queue ----------------------------------------------------------------------------------------------
    def queue_action(act):
        def handler(entry_id):
            if not entry_id:
                return [["runs.queue.pick_first"]]
            try:
                act(entry_id)
            except queue.QueueError as err:
                return [html.escape(str(err))]
            return []
        return handler

    # --- compare --------------------------------------------------------------------------------------------
    def on_compare(paths, axis, lang_now):
        runs = [r for r in (history.workspace_run(workspace, p) for p in paths or []) if r is not None]
        if len(runs) < 2:
            return gr.skip(), gr.skip(), [["runs.compare.pick_two"]]
        return (*compare_view(runs, axis, lang_now), [])

    def compare_view(runs: list[RunFolder], axis: str, lang_now: str):
        rows = [history.run_row(r) for r in runs]
        labels = [row.name for row in rows]
        fig = compare_figure([(label, compare.curves(run, axis)) for label, run in zip(labels, runs)],
                             chart_titles(lang_now), i18n.text(f"runs.x.{axis}", lang_now))
        data = [[setting, *values] for setting, values in compare.differing_settings(runs)]
        data += [[i18n.text(key, lang_now), *[cell(row, lang_now) for row in rows]] for key, cell in FINAL_FIGURES]
        return fig, {"headers": [i18n.text("runs.compare.setting", lang_now), *labels], "data": data}

    def on_switch(lang_now, path, paths, axis, current_pick, current_compare, current_queue):
        drawn = list(draw(path, lang_now))[1:5]  # summary, charts, job, log
        runs = [r for r in (history.workspace_run(workspace, p) for p in paths or []) if r is not None]
        shown = compare_view(runs, axis, lang_now) if len(runs) >= 2 else (gr.skip(), gr.skip())
        return [*lists(lang_now, current_pick, current_compare, current_queue), *drawn, *shown,
                gr.update(choices=x_choices(lang_now))]

    # --- wiring -----------------------------------------------------------------------------------------------
    list_inputs = [page.language, pick, compare_pick, queue_pick]
    refresh.click(on_refresh, list_inputs, list_outputs)
    timer = gr.Timer(2.0)
    timer.tick(on_tick, [seen, *list_inputs], [seen, *list_outputs], show_progress="hidden")
    timer.tick(on_detail_tick, [opened, pick, page.language], [*detail_outputs, delete_button], show_progress="hidden")
    table.select(on_select, None, [pick])
    pick.change(on_pick, [pick, page.language],
                [*detail_outputs, delete_button, confirm_button, cancel_button, doomed], show_progress="hidden")
    resume_button.click(on_resume, [pick], [message])
    stop_button.click(on_stop, [pick], [message])
    kill_button.click(on_kill, [pick], [message])
    load_button.click(on_load, [pick], [*load_outputs, message])
    extend_button.click(on_extend, [pick], [*load_outputs, message])
    rename_button.click(on_rename, [pick, name], [message]).then(on_refresh, list_inputs, list_outputs)
    note_button.click(on_note, [pick, note], [message])
    delete_button.click(on_delete, [pick], [doomed, message, confirm_button, cancel_button])
    confirm_button.click(on_confirm, [doomed], [doomed, message, confirm_button, cancel_button]).then(
        on_refresh, list_inputs, list_outputs)
    cancel_button.click(on_cancel, None, [doomed, message, confirm_button, cancel_button])
    for button, act in ((up, lambda e: queue.move(workspace, e, -1)), (down, lambda e: queue.move(workspace, e, 1)),
                        (remove, lambda e: queue.remove(workspace, e))):
        button.click(queue_action(act), [queue_pick], [message]).then(on_refresh, list_inputs, list_outputs)
    compare_button.click(on_compare, [compare_pick, x_axis, page.language], [compare_charts, compare_table, message])
    x_axis.change(on_compare, [compare_pick, x_axis, page.language], [compare_charts, compare_table, message])
    page.also(on_switch, [pick, compare_pick, x_axis, pick, compare_pick, queue_pick],
              [*list_outputs, summary, charts, job, log, compare_charts, compare_table, x_axis])
    return {"refresh": (on_refresh, list_inputs, list_outputs)}


def x_choices(lang: str) -> list[tuple[str, str]]:
    return [(i18n.text(f"runs.x.{axis}", lang), axis) for axis in X_AXES]
