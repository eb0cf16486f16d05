"""The Train tab: the job form, Start/Stop, live progress, charts and log tail.

Everything it shows comes from the run folder, polled by byte offset, so a
page refresh, a second browser, or a run started from the CLI all look the
same: the tab attaches to whichever run is active in the workspace.
"""
from __future__ import annotations

import html
from pathlib import Path

import gradio as gr

from core.data.registry import DatasetError, read_registry
from core.methods import METHODS
from core.models.params import ParamCountError, count_parameters
from core.paths import PRESETS_DIR
from core.runs import runner
from core.runs.folder import ACTIVE_STATES, RunFolder, active_run, list_runs
from core.spec import BUNDLED_MODEL, JobSpec, SpecError, check_launch, load_spec, spec_from_dict
from webui import i18n
from webui.charts import PANELS, has_ranks, ranks_figure, training_figure
from webui.form import JobForm

FIXED_SECTIONS = ("model", "data")
LOG_LINES = 16
LATER_SECTIONS = ("train", "runtime")


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
    error = ""
    if state == "failed" and status.get("error"):
        err = status["error"]
        error = f"<div class='train-error'><b>{html.escape(str(err.get('kind')))}</b>: {html.escape(str(err.get('message')))}</div>"
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
    keys = [t for _, t in PANELS] + ["chart.eval_loss"]
    return {k: i18n.text(k, lang) for k in keys}


def ranks_update(records: list[dict], lang: str):
    """The AdaLoRA rank heat map when the run's records carry ranks; hidden for every other method."""
    if not has_ranks(records):
        return gr.update(value=None, visible=False)
    return gr.update(value=ranks_figure(records, i18n.text("chart.ranks", lang)), visible=True)


def empty_view() -> dict:
    return {"run": None, "offset": 0, "records": [], "state": None}


def build_train_tab(workspace: Path, lang: str = "en"):
    """Draw the tab; returns (components to relabel on a language switch, the relabel function)."""
    form = JobForm(lang, choices_for)
    defaults = JobSpec()
    view = gr.State(empty_view())

    with gr.Row():
        preset = gr.Dropdown(choices=preset_names(), value=None, label=i18n.text("preset", lang),
                             info=i18n.text("preset.help", lang), elem_id="preset")
        method = gr.Dropdown(choices=list(METHODS), value=defaults.method, label=i18n.text("method", lang),
                             elem_id="method")
    explainer = gr.Markdown(i18n.explainer(defaults.method, METHODS[defaults.method].EXPLAINER, lang), elem_id="method-explainer")
    param_count = gr.Markdown(i18n.text("param_count.counting", lang), elem_id="param-count")
    for section in FIXED_SECTIONS:
        form.render_section(section, defaults=defaults)
    method_sections = list(dict.fromkeys(s for m in METHODS.values() for s in m.SECTIONS))
    for section in method_sections:
        box = form.render_section(section, defaults=defaults)
        box.visible = section in METHODS[defaults.method].SECTIONS
    for section in LATER_SECTIONS:
        form.render_section(section, open=section == "train", defaults=defaults)

    with gr.Row():
        start = gr.Button(i18n.text("start", lang), variant="primary", elem_id="start-button")
        stop = gr.Button(i18n.text("stop", lang), variant="stop", elem_id="stop-button")
    message = gr.Markdown("", elem_id="train-message")
    progress = gr.HTML(progress_html(None, None, [], lang), elem_id="train-progress-box")
    charts = gr.Plot(training_figure([], chart_titles(lang)), elem_id="train-charts", label=i18n.text("charts", lang))
    ranks = gr.Plot(None, elem_id="train-ranks", label=i18n.text("chart.ranks", lang), visible=False)
    log = gr.Textbox(label=i18n.text("log", lang), lines=LOG_LINES, max_lines=LOG_LINES, elem_id="train-log",
                     interactive=False)
    lang_state = gr.State(lang)

    # --- handlers -------------------------------------------------------------------
    def on_method(name, lang_now):
        boxes = [gr.update(visible=s in METHODS[name].SECTIONS) for s in method_sections]
        return [i18n.explainer(name, METHODS[name].EXPLAINER, lang_now), *boxes]

    # Only the model and the method's own fields decide the count, so a problem elsewhere in the form
    # (say, an emptied learning rate) does not hide it.
    count_keys = [d for d in form.components if d.split(".", 1)[0] in ("model", *method_sections)]

    def on_count(lang_now, method_name, *values):
        keep = ("model", *METHODS[method_name].SECTIONS)
        pairs = [(k, v) for k, v in zip(count_keys, values) if k.split(".", 1)[0] in keep]
        data = form.to_dict(method_name, [v for _, v in pairs], [k for k, _ in pairs])
        return param_count_text(data, lang_now)

    def on_preset(name):
        if not name:
            return [gr.skip()] * (1 + len(form.inputs)) + [""]
        try:
            spec = load_spec(str(PRESETS_DIR / f"{name}.yaml"))
        except SpecError as err:
            return [gr.skip()] * (1 + len(form.inputs)) + [f"**{name}**: {err}"]
        return [spec.method, *form.values_from(spec), ""]

    def on_start(state, lang_now, method_name, *values):
        try:
            spec = spec_from_dict(form.to_dict(method_name, list(values)))
            check_launch(spec)  # model, data, device and the method's backend: only when starting
        except SpecError as err:
            lines = "\n".join(f"- `{k}`: {m}" if k else f"- {m}" for k, m in err.problems)
            return state, f"**{i18n.text('invalid', lang_now)}**\n\n{lines}"
        try:
            run = runner.start(spec, workspace)
        except runner.RunnerBusy as err:
            return state, f"**{i18n.text('busy', lang_now)}** {err}"
        return {"run": str(run.path), "offset": 0, "records": [], "state": None}, i18n.text("started", lang_now, run=run.run_id)

    def on_stop(state, lang_now):
        run = active_run(workspace)
        if run is None:
            return i18n.text("nothing_to_stop", lang_now)
        runner.stop(run)
        return i18n.text("stopping", lang_now, run=run.run_id)

    def on_tick(state, lang_now):
        """Read what the run folder gained since the last tick; redraw only what changed."""
        current = RunFolder(Path(state["run"])) if state["run"] else None
        if current is None or state["state"] not in ACTIVE_STATES:
            live = active_run(workspace)
            if live is not None and (current is None or live.path != current.path):
                current, state = live, {"run": str(live.path), "offset": 0, "records": [], "state": None}
        if current is None:
            return state, gr.skip(), gr.skip(), gr.skip(), gr.skip()
        new, offset = current.read_metrics(state["offset"])
        status = current.status()
        changed = (bool(new) or status["state"] != state["state"] or status.get("step") != state.get("step")
                   or lang_now != state.get("lang"))
        if not changed and status["state"] not in ACTIVE_STATES:
            return state, gr.skip(), gr.skip(), gr.skip(), gr.skip()
        records = state["records"] + new
        state = {"run": state["run"], "offset": offset, "records": records, "state": status["state"],
                 "step": status.get("step"), "lang": lang_now}
        redraw = new or not records
        figure = training_figure(records, chart_titles(lang_now)) if redraw else gr.skip()
        rank_map = ranks_update(records, lang_now) if redraw else gr.skip()
        tail = "\n".join(current.log_tail().splitlines()[-LOG_LINES:])  # the box shows the newest lines whole
        return state, progress_html(current, status, records, lang_now), figure, tail, rank_map

    def on_load(lang_now):
        """A fresh page attaches to the active run, or shows the latest one, with that run's job in the form."""
        run = active_run(workspace) or next(iter(list_runs(workspace)), None)
        if run is None:
            return (empty_view(), *on_tick(empty_view(), lang_now)[1:], *[gr.skip()] * (1 + len(form.inputs)))
        state = {"run": str(run.path), "offset": 0, "records": [], "state": None}
        try:
            spec = load_spec(str(run.job))
            job_values = [spec.method, *form.values_from(spec)]
        except SpecError:  # a job written by another version of the spec: show the run, keep the form
            job_values = [gr.skip()] * (1 + len(form.inputs))
        return (state, *on_tick(state, lang_now)[1:], *job_values)

    method_boxes = [form.section_boxes[s] for s in method_sections]
    method.change(on_method, [method, lang_state], [explainer, *method_boxes])
    preset.change(on_preset, [preset], [method, *form.inputs, message])
    start.click(on_start, [view, lang_state, method, *form.inputs], [view, message])
    stop.click(on_stop, [view, lang_state], [message])
    count_inputs = [lang_state, method, *(form.components[k] for k in count_keys)]
    # always_last: typing a rank fires a change per keystroke; only the newest value is worth counting.
    gr.on([method.change, lang_state.change, *(form.components[k].change for k in count_keys)], on_count,
          count_inputs, [param_count], trigger_mode="always_last", concurrency_limit=1, show_progress="hidden")
    timer = gr.Timer(1.0)
    timer.tick(on_tick, [view, lang_state], [view, progress, charts, log, ranks], show_progress="hidden")

    def relabel(lang_new, state):
        sections = [gr.update(label=i18n.text(f"section.{s}", lang_new)) for s in form.section_boxes]
        return [
            lang_new,
            gr.update(label=i18n.text("preset", lang_new), info=i18n.text("preset.help", lang_new)),
            gr.update(label=i18n.text("method", lang_new)),
            gr.update(value=i18n.text("start", lang_new)),
            gr.update(value=i18n.text("stop", lang_new)),
            gr.update(value=training_figure(state["records"], chart_titles(lang_new)), label=i18n.text("charts", lang_new)),
            gr.update(label=i18n.text("log", lang_new)),
            {**ranks_update(state["records"], lang_new), "label": i18n.text("chart.ranks", lang_new)},
            *sections,
            *form.relabel(lang_new),
        ]

    relabel_outputs = [lang_state, preset, method, start, stop, charts, log, ranks, *form.section_boxes.values(), *form.inputs]
    return {"relabel": relabel, "relabel_outputs": relabel_outputs, "load": on_load, "load_inputs": [lang_state],
            "load_outputs": [view, progress, charts, log, ranks, method, *form.inputs], "method": method,
            "explainer": explainer, "lang_state": lang_state, "view": view,
            "count": on_count, "count_inputs": count_inputs, "count_outputs": [param_count], "form": form}
