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
from core.runtime.hardware import cpu_cores, gpus
from core.runtime.nodes import node_commands
from core.safety.access import AccessPolicy
from core.spec import BUNDLED_MODEL, JobSpec, SpecError, check_launch, dump_spec, load_spec, spec_from_dict
from webui import i18n
from webui.charts import GPU_PANELS, PANELS, gpu_figure, has_gpu_metrics, has_ranks, ranks_figure, training_figure
from webui.form import JobForm
from webui.language import PageLanguage
from webui.run_text import reason_html

LOG_LINES = 16
# Besides the model and the method, the fields the memory estimate under the parameter count reads.
ESTIMATE_KEYS = ("data.max_length", "train.batch_size", "train.gradient_checkpointing", "runtime.device",
                 "runtime.precision", "runtime.lean_loss")


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESETS_DIR.glob("*.yaml"))


def device_choices(found) -> list[tuple[str, str]]:
    """runtime.device suggestions from what this machine has: auto and cpu; with GPUs also cuda (all of them),
    each GPU by its id, labelled with its name and memory, and, with several, all their ids as a list."""
    choices = [("auto", "auto"), ("cpu", "cpu")]
    if found:
        choices.append(("cuda", "cuda"))
        choices += [(f"{g.index}: {g.name}, {g.memory_mb / 1024:.0f} GB", str(g.index)) for g in found]
        if len(found) > 1:
            ids = ",".join(str(g.index) for g in found)
            choices.append((ids, ids))
    return choices


def machine_text(cores: int, found, lang: str) -> str:
    """What this machine has to train on, in one line under the runtime fields."""
    listed = "; ".join(i18n.text("machine.gpu", lang, index=g.index, name=g.name, memory=f"{g.memory_mb / 1024:.0f}")
                       for g in found)
    return i18n.text("machine.line", lang, cores=cores, gpus=listed or i18n.text("machine.no_gpu", lang))


def node_command_text(commands: list[str]) -> str:
    return "\n\n".join(f"# node {rank}\n{command}" for rank, command in enumerate(commands, start=1))


def choices_for(kind: str | None):
    """Suggestions for free-text fields; the user may still type anything."""
    if kind == "device":
        return device_choices(gpus())
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
        f"<div>{html.escape(line)}</div>{error}{estimate_check_html(status, lang) if state not in ACTIVE_STATES else ''}</div>"
    )


def param_count_text(data: dict, lang: str, policy: AccessPolicy | None = None) -> str:
    """The parameter-count line for a job's data, or what stops it from being counted. With the server's
    `policy`, a job asking for its model folder's code is not counted where the operator did not allow that."""
    try:
        spec = spec_from_dict(data)
        refused = policy.remote_code_refusal(spec.model.trust_remote_code) if policy else None
        if refused:
            raise ParamCountError(f"model.trust_remote_code: {refused}")
        counts = count_parameters(spec)
    except SpecError as err:
        problems = "; ".join(f"`{k}`: {m}" if k else m for k, m in err.problems)
        return f"{i18n.text('param_count.invalid', lang)} {problems}"
    except ParamCountError as err:
        return f"{i18n.text('param_count.invalid', lang)} {err}"
    except Exception as err:  # anything else (a broken config, a failed conversion): say so, never keep stale numbers
        return f"{i18n.text('param_count.invalid', lang)} {type(err).__name__}: {err}"
    line = i18n.text("param_count.line", lang, trainable=f"{counts['trainable']:,}", all=f"{counts['all']:,}",
                     share=f"{100 * counts['share']:.4f}", total=f"{counts['total']:,}")
    return f"{line}\n\n{estimate_text(spec_from_dict(data), counts, lang)}"


def estimate_text(spec, counts: dict, lang: str) -> str:
    """The pre-launch memory (by part) and step-time estimate, under the parameter count."""
    from core.perf.estimate import job_estimate_with_time

    est = job_estimate_with_time(spec, counts)
    parts = {k: f"{v / 2**20:,.0f}" for k, v in est.parts.items()}
    step = i18n.text("estimate.step", lang, seconds=f"{est.step_s:.2f}") if est.step_s else ""
    return i18n.text("estimate.line", lang, total=f"{est.total / 2**20:,.0f}", batch=spec.train.batch_size,
                     length=spec.data.max_length, step=step, **parts)


def estimate_check_html(status: dict, lang: str) -> str:
    """When a run has ended: its predicted and measured peak memory and step time side by side."""
    est = status.get("estimate") or {}
    predicted, measured = est.get("predicted"), est.get("measured")
    if not predicted or not measured or not measured.get("peak_mb"):
        return ""
    diff = f"{(predicted['peak_mb'] / measured['peak_mb'] - 1) * 100:+.0f}%"
    p_step = f"{predicted['step_s']:.2f} s" if predicted.get("step_s") else "?"
    m_step = f"{measured['step_s']:.2f} s" if measured.get("step_s") else "?"
    line = i18n.text("estimate.check", lang, predicted=f"{predicted['peak_mb']:,.0f}",
                     measured=f"{measured['peak_mb']:,.0f}", diff=diff, p_step=p_step, m_step=m_step)
    return f"<div id='estimate-check'>{html.escape(line)}</div>"


def too_big_message(spec) -> list:
    """Message parts warning that the job's estimate exceeds the free memory; empty when it fits."""
    from core.perf.estimate import exceeds_free_memory, job_estimate_with_time

    try:
        too_big = exceeds_free_memory(spec, job_estimate_with_time(spec))
    except Exception:  # the estimate is advice; the run reports what really goes wrong
        return []
    if not too_big:
        return []
    return ["**", ["estimate.too_big", {"total": f"{too_big[0] / 2**20:,.0f}", "free": f"{too_big[1] / 2**20:,.0f}"}],
            "**\n\n"]


def chart_titles(lang: str) -> dict[str, str]:
    keys = [t for _, t in PANELS + GPU_PANELS] + ["chart.eval_loss", "chart.step", "chart.resumed"]
    return {k: i18n.text(k, lang) for k in keys}


def ranks_update(records: list[dict], lang: str):
    """The AdaLoRA rank heat map when the run's records carry ranks; hidden for every other method."""
    if not has_ranks(records):
        return gr.update(value=None, visible=False)
    figure = ranks_figure(records, i18n.text("chart.ranks", lang), i18n.text("chart.step", lang),
                          i18n.text("chart.rank", lang))
    return gr.update(value=figure, visible=True)


def gpu_update(records: list[dict], lang: str):
    """Per-GPU memory, utilisation and power when the run's records carry them (runs on NVIDIA GPUs); hidden
    otherwise."""
    if not has_gpu_metrics(records):
        return gr.update(value=None, visible=False)
    return gr.update(value=gpu_figure(records, chart_titles(lang)), visible=True)


def spec_problems(err: SpecError) -> list:
    lines = "\n".join(f"- `{k}`: {html.escape(m)}" if k else f"- {html.escape(m)}" for k, m in err.problems)
    return ["**", ["invalid"], "**\n\n" + lines]


def build_train_tab(workspace: Path, page: PageLanguage, policy: AccessPolicy) -> dict:
    """Draw the tab; returns what the page wires to other tabs (the form, the page-load handlers, run ends).
    `policy` is the server's access rule: the datasets a job names must lie where the server reads data."""
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
    cores, found = cpu_cores(), gpus()  # the machine does not change while the page is served
    extras = {}

    def runtime_extras():
        """Below the runtime fields: what this machine has, and the other nodes' commands (several nodes)."""
        extras["machine"] = gr.Markdown(machine_text(cores, found, lang), elem_id="train-machine")
        extras["node_button"] = gr.Button(visible=defaults.runtime.nodes > 1, size="sm",
                                          **i18n.props("node-command-button", lang))
        extras["node_code"] = gr.Code(language="shell", interactive=False, visible=False,
                                      **i18n.props("node-command", lang))

    sections = form_sections()
    for section in sections:
        box = form.render_section(section.name, open=section.opened, defaults=defaults,
                                  after=runtime_extras if section.name == "runtime" else None)
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
    gpu_charts = gr.Plot(None, visible=False, **i18n.props("train-gpu-charts", lang))
    log = gr.Textbox(lines=LOG_LINES, max_lines=LOG_LINES, interactive=False, **i18n.props("train-log", lang))

    # --- handlers -------------------------------------------------------------------
    def on_method(name, lang_now):
        boxes = [gr.update(visible=shown_for(name, s)) for s in method_owned]
        return [i18n.explainer(name, METHODS[name].EXPLAINER, lang_now), *boxes]

    # Only the model and the method's own fields decide the count, so a problem elsewhere in the form
    # (say, an emptied learning rate) does not hide it.
    count_keys = [d for d in form.components
                  if d.split(".", 1)[0] in ("model", *(s.name for s in method_owned)) or d in ESTIMATE_KEYS]

    def on_count(lang_now, method_name, *values):
        keep = ("model", *METHODS[method_name].SECTIONS)
        pairs = [(k, v) for k, v in zip(count_keys, values) if k.split(".", 1)[0] in keep or k in ESTIMATE_KEYS]
        data = form.to_dict(method_name, [v for _, v in pairs], [k for k, _ in pairs])
        return param_count_text(data, lang_now, policy)

    def on_preset(name):
        if not name or name not in preset_names():  # only the listed presets: the name becomes a file path
            return [gr.skip()] * (1 + len(form.inputs)) + [[]]
        try:
            spec = load_spec(str(PRESETS_DIR / f"{name}.yaml"))
        except SpecError as err:
            return [gr.skip()] * (1 + len(form.inputs)) + [[f"**{html.escape(name)}**: {html.escape(str(err))}"]]
        return [spec.method, *form.values_from(spec), []]

    def checked_spec(method_name, values):
        spec = spec_from_dict(form.to_dict(method_name, list(values)))
        check_launch(spec, policy)  # model, data, device and the method's backend: only when starting
        return spec

    def on_start(current, lang_now, method_name, *values):
        hidden = gr.update(visible=False)
        try:
            spec = checked_spec(method_name, values)
        except SpecError as err:
            return current, spec_problems(err), gr.skip(), hidden
        warning = too_big_message(spec)
        try:
            run = runner.start(spec, workspace)
        except runner.RunnerBusy as err:
            return current, ["**", ["busy"], f"** {html.escape(str(err))}"], gr.skip(), gr.update(visible=True)
        except runner.LaunchError as err:  # the process could not be started; the run folder says failed
            return current, ["**", ["launch_failed"], f"** {html.escape(str(err))}"], gr.skip(), hidden
        # Show the new run at once, not the previous run's last state until the next tick; with the launch
        # checks' warnings (no chat template, little free disk), which do not stop it.
        notes = [f"\n\n- {html.escape(note)}" for note in spec.notes]
        return (RunWatch.of(run), [*warning, ["started", {"run": run.run_id}], *notes],
                progress_html(run, run.status(), [], lang_now), hidden)

    def on_nodes(nodes):
        several = bool(nodes) and nodes > 1
        return gr.update(visible=several), gr.update(visible=False) if not several else gr.skip()

    def on_node_commands(lang_now, method_name, *values):
        """The commands for the other nodes, with the job as the form holds it now."""
        try:
            spec = spec_from_dict(form.to_dict(method_name, list(values)))
        except SpecError as err:
            return gr.skip(), spec_problems(err)
        return gr.update(value=node_command_text(node_commands(spec)), visible=True), []

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
        """progress, charts, log, ranks, GPU charts for what the watch has read."""
        run = current.folder
        marks = resume_marks(status) if status else []
        figure = training_figure(current.records, chart_titles(lang_now), marks) if redraw else gr.skip()
        rank_map = ranks_update(current.records, lang_now) if redraw else gr.skip()
        gpu_map = gpu_update(current.records, lang_now) if redraw else gr.skip()
        tail = "\n".join(run.log_tail().splitlines()[-LOG_LINES:]) if run else ""  # the newest lines, whole
        return [progress_html(run, status, current.records, lang_now), figure, tail, rank_map, gpu_map]

    def on_tick(current, lang_now):
        """Read what the run folder gained since the last tick; redraw only what changed."""
        current = current.follow(workspace)
        if current.run is None:
            return current, *[gr.skip()] * 5, gr.skip()
        look = current.look()
        if not look.moved and look.status["state"] not in ACTIVE_STATES:
            return look.watch, *[gr.skip()] * 5, gr.skip()
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
    preset.change(on_preset, [preset], [method, *form.inputs, message], api_name="train_preset")
    start.click(on_start, [watch, page.language, method, *form.inputs], [watch, message, progress, enqueue],
                api_name="train_start")
    enqueue.click(on_enqueue, [method, *form.inputs], [message, enqueue], api_name="train_enqueue")
    stop.click(on_stop, None, [message])
    form.components["runtime.nodes"].change(on_nodes, [form.components["runtime.nodes"]],
                                            [extras["node_button"], extras["node_code"]], show_progress="hidden")
    extras["node_button"].click(on_node_commands, [page.language, method, *form.inputs], [extras["node_code"], message])
    count_inputs = [page.language, method, *(form.components[k] for k in count_keys)]
    # always_last: typing a rank fires a change per keystroke; only the newest value is worth counting.
    gr.on([method.change, page.language.change, *(form.components[k].change for k in count_keys)], on_count,
          count_inputs, [param_count], trigger_mode="always_last", concurrency_limit=1, show_progress="hidden")
    timer = gr.Timer(1.0)
    timer.tick(on_tick, [watch, page.language], [watch, progress, charts, log, ranks, gpu_charts, run_ended],
               show_progress="hidden")
    page.also(on_switch, [watch, method], [explainer, progress, charts, log, ranks, gpu_charts])
    page.also(lambda lang_now: [machine_text(cores, found, lang_now)], [], [extras["machine"]])

    return {"form": form, "method": method, "run_ended": run_ended,
            "load": (on_load, [page.language], [watch, progress, charts, log, ranks, gpu_charts, method, *form.inputs]),
            "count": (on_count, count_inputs, [param_count])}
