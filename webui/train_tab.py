"""The Train tab: the job form, Start/Stop, live progress, charts and log tail.

Everything it shows comes from the run folder, read through core.runs.views.RunWatch, so a page
refresh, a second browser, or a run started from the CLI all look the same: the tab attaches to
whichever run is active in the workspace.
"""
from __future__ import annotations

import html
from pathlib import Path

import gradio as gr

from core.data.registry import DatasetError, read_registry
from core.form_layout import form_sections, shown_for
from core.methods import METHODS
from core.models.params import ParamCountError, count_parameters
from core.paths import PRESETS_DIR
from core.runs import queue, runner, scheduler
from core.runs.folder import ACTIVE_STATES, RunFolder, active_run
from core.runs.views import RunWatch, resume_marks
from core.spec import BUNDLED_MODEL, JobSpec, SpecError, check_launch, dump_spec, load_spec, spec_from_dict
from webui import i18n
from webui.charts import PANELS, has_ranks, ranks_figure, training_figure
from webui.form import JobForm
from webui.language import PageLanguage
from webui.run_text import reason_html

LOG_LINES = 16


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESETS_DIR.glob("*.yaml"))


def choices_for(kind: str | None):
    """Suggestions for free-text fields; the user may still type anything."""
    if kind == "model":
        return [BUNDLED_MODEL]
    if kind == "dataset":
        try:
            return sorted(read_registry())
        except DatasetError:
            return []
    return None


def format_eta(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(seconds)
    return f"{seconds // 60}:{seconds % 60:02d}"


def progress_html(run: RunFolder | None, status: dict | None, records: list[dict], lang: str) -> str:
    if run is None or status is None:
        return f"<div id='train-progress'>{html.escape(i18n.text('progress.idle', lang))}</div>"
    step, total = status.get("step") or 0, status.get("total_steps") or 0
    percent = 100.0 * step / total if total else 0.0
    eta = records[-1].get("eta_s") if records and status["state"] == "running" else None
    state = status["state"]
    label = i18n.text(f"state.{state}", lang)
    key = "progress.line" if state in ACTIVE_STATES else "progress.done"
    line = i18n.text(key, lang, run=run.run_id, state=label, step=step, total=total or "?", eta=format_eta(eta))
    error = reason_html(status, run.log_tail(8000), lang) if status.get("error") else ""
    return (
        f"<div id='train-progress' data-state='{state}' data-step='{step}'>"
        f"<progress max='100' value='{percent:.1f}' style='width:100%'></progress>"
        f"<div>{html.escape(line)}</div>{error}</div>"
    )


def param_count_text(data: dict, lang: str) -> str:
    """The parameter-count line for a job's data, or what stops it from being counted."""
    try:
        counts = count_parameters(spec_from_dict(data))
    except SpecError as err:
        problems = "; ".join(f"`{k}`: {m}" if k else m for k, m in err.problems)
        return f"{i18n.text('param_count.invalid', lang)} {problems}"
    except ParamCountError as err:
        return f"{i18n.text('param_count.invalid', lang)} {err}"
    except Exception as err:  # anything else (a broken config, a failed conversion): say so, never keep stale numbers
        return f"{i18n.text('param_count.invalid', lang)} {type(err).__name__}: {err}"
    return i18n.text("param_count.line", lang, trainable=f"{counts['trainable']:,}", all=f"{counts['all']:,}",
                     share=f"{100 * counts['share']:.4f}", total=f"{counts['total']:,}")


def chart_titles(lang: str) -> dict[str, str]:
    keys = [t for _, t in PANELS] + ["chart.eval_loss", "chart.step", "chart.resumed"]
    return {k: i18n.text(k, lang) for k in keys}


def ranks_update(records: list[dict], lang: str):
    """The AdaLoRA rank heat map when the run's records carry ranks; hidden for every other method."""
    if not has_ranks(records):
        return gr.update(value=None, visible=False)
    figure = ranks_figure(records, i18n.text("chart.ranks", lang), i18n.text("chart.step", lang),
                          i18n.text("chart.rank", lang))
    return gr.update(value=figure, visible=True)


def spec_problems(err: SpecError) -> list:
    lines = "\n".join(f"- `{k}`: {html.escape(m)}" if k else f"- {html.escape(m)}" for k, m in err.problems)
    return ["**", ["invalid"], "**\n\n" + lines]


def build_train_tab(workspace: Path, page: PageLanguage) -> dict:
    """Draw the tab; returns what the page wires to other tabs (the form, the page-load handlers, run ends)."""
    lang = page.lang
    form = JobForm(lang, choices_for)
    defaults = JobSpec()
    watch = gr.State(RunWatch())
    run_ended = gr.State(None)  # the folder of the last run seen to end here; other tabs refresh on its change

    with gr.Row():
        preset = gr.Dropdown(choices=preset_names(), value=None, **i18n.props("preset", lang))
        method = gr.Dropdown(choices=list(METHODS), value=defaults.method, **i18n.props("method", lang))
    explainer = gr.Markdown(i18n.explainer(defaults.method, METHODS[defaults.method].EXPLAINER, lang),
                            elem_id="method-explainer")
    param_count = gr.Markdown(i18n.text("param_count.counting", lang), elem_id="param-count")
    sections = form_sections()
    for section in sections:
        box = form.render_section(section.name, open=section.opened, defaults=defaults)
        box.visible = shown_for(defaults.method, section)
    method_owned = [s for s in sections if s.method_owned]

    with gr.Row():
        start = gr.Button(variant="primary", **i18n.props("start-button", lang))
        # Offered when Start finds a run still going: the job waits in the queue and starts after it.
        enqueue = gr.Button(visible=False, **i18n.props("train-queue", lang))
        stop = gr.Button(variant="stop", **i18n.props("stop-button", lang))
    message = page.message("train-message")
    progress = gr.HTML(progress_html(None, None, [], lang), elem_id="train-progress-box")
    charts = gr.Plot(training_figure([], chart_titles(lang)), **i18n.props("train-charts", lang))
    ranks = gr.Plot(None, visible=False, **i18n.props("train-ranks", lang))
    log = gr.Textbox(lines=LOG_LINES, max_lines=LOG_LINES, interactive=False, **i18n.props("train-log", lang))

    # --- handlers -------------------------------------------------------------------
    def on_method(name, lang_now):
        boxes = [gr.update(visible=shown_for(name, s)) for s in method_owned]
        return [i18n.explainer(name, METHODS[name].EXPLAINER, lang_now), *boxes]

    # Only the model and the method's own fields decide the count, so a problem elsewhere in the form
    # (say, an emptied learning rate) does not hide it.
    count_keys = [d for d in form.components if d.split(".", 1)[0] in ("model", *(s.name for s in method_owned))]

    def on_count(lang_now, method_name, *values):
        keep = ("model", *METHODS[method_name].SECTIONS)
        pairs = [(k, v) for k, v in zip(count_keys, values) if k.split(".", 1)[0] in keep]
        data = form.to_dict(method_name, [v for _, v in pairs], [k for k, _ in pairs])
        return param_count_text(data, lang_now)

    def on_preset(name):
        if not name:
            return [gr.skip()] * (1 + len(form.inputs)) + [[]]
        try:
            spec = load_spec(str(PRESETS_DIR / f"{name}.yaml"))
        except SpecError as err:
            return [gr.skip()] * (1 + len(form.inputs)) + [[f"**{html.escape(name)}**: {html.escape(str(err))}"]]
        return [spec.method, *form.values_from(spec), []]

    def checked_spec(method_name, values):
        spec = spec_from_dict(form.to_dict(method_name, list(values)))
        check_launch(spec)  # model, data, device and the method's backend: only when starting
        return spec

    def on_start(current, lang_now, method_name, *values):
        hidden = gr.update(visible=False)
        try:
            spec = checked_spec(method_name, values)
        except SpecError as err:
            return current, spec_problems(err), gr.skip(), hidden
        try:
            run = runner.start(spec, workspace)
        except runner.RunnerBusy as err:
            return current, ["**", ["busy"], f"** {html.escape(str(err))}"], gr.skip(), gr.update(visible=True)
        except runner.LaunchError as err:  # the process could not be started; the run folder says failed
            return current, ["**", ["launch_failed"], f"** {html.escape(str(err))}"], gr.skip(), hidden
        # Show the new run at once, not the previous run's last state until the next tick.
        return (RunWatch.of(run), [["started", {"run": run.run_id}]], progress_html(run, run.status(), [], lang_now),
                hidden)

    def on_enqueue(method_name, *values):
        try:
            spec = checked_spec(method_name, values)
        except SpecError as err:
            return spec_problems(err), gr.skip()
        entry = queue.add(workspace, dump_spec(spec))
        scheduler.ensure_running(workspace)
        return [["queued", {"entry": entry.entry_id, "position": entry.position}]], gr.update(visible=False)

    def on_stop():
        run = active_run(workspace)
        if run is None:
            return [["nothing_to_stop"]]
        runner.stop(run)
        return [["stopping", {"run": run.run_id}]]

    def draw(current: RunWatch, status: dict | None, lang_now: str, redraw: bool = True) -> list:
        """progress, charts, log, ranks for what the watch has read."""
        run = current.folder
        marks = resume_marks(status) if status else []
        figure = training_figure(current.records, chart_titles(lang_now), marks) if redraw else gr.skip()
        rank_map = ranks_update(current.records, lang_now) if redraw else gr.skip()
        tail = "\n".join(run.log_tail().splitlines()[-LOG_LINES:]) if run else ""  # the newest lines, whole
        return [progress_html(run, status, current.records, lang_now), figure, tail, rank_map]

    def on_tick(current, lang_now):
        """Read what the run folder gained since the last tick; redraw only what changed."""
        current = current.follow(workspace)
        if current.run is None:
            return current, *[gr.skip()] * 4, gr.skip()
        look = current.look()
        if not look.moved and look.status["state"] not in ACTIVE_STATES:
            return look.watch, *[gr.skip()] * 4, gr.skip()
        ended = str(look.watch.run) if look.ended else gr.skip()
        return look.watch, *draw(look.watch, look.status, lang_now, redraw=bool(look.new) or not look.watch.records), ended

    def on_load(lang_now):
        """A fresh page attaches to the active run, or shows the latest one, with that run's job in the form."""
        current = RunWatch.on_open(workspace)
        if current.run is None:
            return current, *draw(current, None, lang_now), *[gr.skip()] * (1 + len(form.inputs))
        look = current.look()
        try:
            spec = load_spec(str(look.watch.folder.job))
            job_values = [spec.method, *form.values_from(spec)]
        except SpecError:  # a job written by another version of the spec: show the run, keep the form
            job_values = [gr.skip()] * (1 + len(form.inputs))
        return look.watch, *draw(look.watch, look.status, lang_now), *job_values

    def on_switch(lang_now, current, method_name):
        status = current.folder.status() if current.run else None
        return [i18n.explainer(method_name, METHODS[method_name].EXPLAINER, lang_now), *draw(current, status, lang_now)]

    method_boxes = [form.section_boxes[s.name] for s in method_owned]
    method.change(on_method, [method, page.language], [explainer, *method_boxes])
    preset.change(on_preset, [preset], [method, *form.inputs, message])
    start.click(on_start, [watch, page.language, method, *form.inputs], [watch, message, progress, enqueue])
    enqueue.click(on_enqueue, [method, *form.inputs], [message, enqueue])
    stop.click(on_stop, None, [message])
    count_inputs = [page.language, method, *(form.components[k] for k in count_keys)]
    # always_last: typing a rank fires a change per keystroke; only the newest value is worth counting.
    gr.on([method.change, page.language.change, *(form.components[k].change for k in count_keys)], on_count,
          count_inputs, [param_count], trigger_mode="always_last", concurrency_limit=1, show_progress="hidden")
    timer = gr.Timer(1.0)
    timer.tick(on_tick, [watch, page.language], [watch, progress, charts, log, ranks, run_ended], show_progress="hidden")
    page.also(on_switch, [watch, method], [explainer, progress, charts, log, ranks])

    return {"form": form, "method": method, "run_ended": run_ended,
            "load": (on_load, [page.language], [watch, progress, charts, log, ranks, method, *form.inputs]),
            "count": (on_count, count_inputs, [param_count])}
