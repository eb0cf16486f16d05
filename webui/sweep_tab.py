"""The Sweep tab: pick a job or a sweep file, write grid lines and ties, start; every combination becomes a
queued run, and the sweep's results table and charts (scores and memory against a swept field) fill in as
the runs finish. Sweeps are files in the workspace, so the tab shows them again after a restart.

Rules live in core/sweeps (grid, plan, start, results); this file lays out and wires.
"""
from __future__ import annotations

import html
from pathlib import Path

import gradio as gr

from core.paths import PROJECT_ROOT
from core.sweeps.grid import SweepError
from core.sweeps.preset import read_source
from core.sweeps.results import cell, chart_points, columns, sweep_rows
from core.sweeps.start import job_file_refusal, lines, start_from_file
from core.sweeps.store import Sweep, list_sweeps, load
from webui import i18n
from webui.charts import sweep_figure
from webui.language import PageLanguage
from webui.run_text import duration_text, figure, state_text

CHART_TITLES = ("sweep.chart.scores", "sweep.chart.memory", "sweep.chart.field")


def job_choices() -> list[str]:
    """The sweep files first, then the job presets, as paths from the project root."""
    presets = PROJECT_ROOT / "presets"
    found = sorted((presets / "sweeps").glob("*.yaml")) + sorted(presets.glob("*.yaml"))
    return [str(p.relative_to(PROJECT_ROOT)) for p in found]


def resolve_job(path: str) -> Path:
    candidate = Path(str(path or "").strip()).expanduser()
    return candidate if candidate.is_absolute() else PROJECT_ROOT / candidate


def header(column: str, lang: str) -> str:
    if column.startswith("score:"):
        return i18n.text("sweep.col.score", lang, name=column[len("score:"):])
    if column in ("#", "state", "final_loss", "eval_loss", "evaluation", "peak_memory_mb", "duration_s", "run"):
        return i18n.text(f"sweep.col.{column.strip('#') or 'number'}", lang)
    return column  # a swept field, named as in the job file


def shown(row, column: str, lang: str):
    value = cell(row, column)
    if column == "state":
        text = state_text(value, lang)
        return text + (f" #{row.queue_position}" if row.queue_position else "")
    if column == "evaluation":
        return i18n.text(f"sweep.eval.{value}", lang) if value else ""
    if column == "duration_s":
        return duration_text(value)
    if isinstance(value, float):
        return figure(value)
    return "" if value is None else value if isinstance(value, int) else str(value)


def table_value(sweep: Sweep | None, rows: list, lang: str) -> dict:
    if sweep is None:
        return {"headers": [i18n.text("sweep.col.number", lang)], "data": []}
    heads = columns(sweep, rows)
    return {"headers": [header(c, lang) for c in heads], "data": [[shown(r, c, lang) for c in heads] for r in rows]}


def sweep_choices(workspace: Path) -> list[tuple[str, str]]:
    return [(f"{s.sweep_id} · {s.name}" if s.name else s.sweep_id, s.sweep_id) for s in list_sweeps(workspace)]


def open_sweep(workspace: Path, sweep_id: str | None) -> Sweep | None:
    try:
        return load(workspace, sweep_id) if sweep_id else None
    except LookupError:
        return None


def build_sweep_tab(workspace: Path, page: PageLanguage, policy=None) -> dict:
    lang = page.lang
    choices = job_choices()
    with gr.Row():
        with gr.Column(scale=3):
            job = gr.Dropdown(choices=choices, value=choices[0] if choices else None, allow_custom_value=True,
                              **i18n.props("sweep-job", lang))
            with gr.Row():
                grid = gr.Textbox(lines=3, **i18n.props("sweep-grid", lang))
                ties = gr.Textbox(lines=3, **i18n.props("sweep-ties", lang))
            with gr.Row():
                overrides = gr.Textbox(lines=2, **i18n.props("sweep-overrides", lang))
                eval_dataset = gr.Textbox(**i18n.props("sweep-eval", lang))
                name = gr.Textbox(**i18n.props("sweep-name", lang))
            start = gr.Button(variant="primary", **i18n.props("sweep-start", lang))
            message = page.message("sweep-message")
    existing = sweep_choices(workspace)
    with gr.Row():
        pick = gr.Dropdown(choices=existing, value=existing[0][1] if existing else None, scale=4,
                           **i18n.props("sweep-pick", lang))
        axis = gr.Dropdown(choices=[], value=None, scale=2, **i18n.props("sweep-axis", lang))
    table = gr.Dataframe(value=table_value(None, [], lang), interactive=False, wrap=True, max_height=420,
                         **i18n.props("sweep-table", lang))
    charts = gr.Plot(None, **i18n.props("sweep-charts", lang))
    seen = gr.State(None)  # what the table showed last, so a tick that changes nothing redraws nothing

    def on_job(path):
        """A sweep file fills the boxes with its grid, ties and eval dataset; a job keeps what is written."""
        if not path:
            return gr.skip(), gr.skip(), gr.skip(), gr.skip()
        if job_file_refusal(resolve_job(path), policy):
            return gr.skip(), gr.skip(), gr.skip(), gr.skip()
        try:
            source = read_source(resolve_job(path))
        except SweepError:
            return gr.skip(), gr.skip(), gr.skip(), gr.skip()
        if not source.grid.lines:
            return gr.skip(), gr.skip(), gr.skip(), gr.skip()
        return ("\n".join(f"{k}={','.join(map(str, v))}" for k, v in source.grid.lines.items()),
                "\n".join(f"{k}={v}" for k, v in source.grid.ties.items()), source.eval, source.name)

    def on_start(path, grid_text, ties_text, overrides_text, dataset, title):
        try:
            sweep = start_from_file(workspace, str(resolve_job(path)), lines(grid_text), lines(ties_text), dataset or "",
                                    lines(overrides_text), title or "", replace_grid=True, policy=policy)
        except SweepError as err:
            said = [["sweep.refused"], f"<pre>{html.escape(str(err))}</pre>"]
            return said, gr.skip()
        said = [["sweep.started", {"sweep": sweep.sweep_id, "runs": len(sweep.runs)}]]
        return said, gr.update(choices=sweep_choices(workspace), value=sweep.sweep_id)

    def draw(sweep_id, field_name, lang_now):
        sweep = open_sweep(workspace, sweep_id)
        rows = sweep_rows(workspace, sweep) if sweep else []
        fields = sweep.swept if sweep else []
        field_name = field_name if field_name in fields else (fields[0] if fields else None)
        fig = None
        if sweep and field_name:
            xs, series, memory = chart_points(rows, field_name)
            titles = {key: i18n.text(key, lang_now, field=field_name) for key in CHART_TITLES}
            fig = sweep_figure(xs, {header(k, lang_now): v for k, v in series.items()}, memory, titles)
        key = (sweep_id, field_name, lang_now, [r.to_json() for r in rows])
        return key, table_value(sweep, rows, lang_now), fig, gr.update(choices=fields, value=field_name)

    def on_pick(sweep_id, field_name, lang_now):
        return draw(sweep_id, field_name, lang_now)

    def on_tick(last, sweep_id, field_name, lang_now):
        sweep = open_sweep(workspace, sweep_id)
        if sweep is None:
            return gr.skip(), gr.skip(), gr.skip(), gr.skip()
        drawn = draw(sweep_id, field_name, lang_now)
        if drawn[0] == last:
            return gr.skip(), gr.skip(), gr.skip(), gr.skip()
        return drawn

    def on_switch(lang_now, sweep_id, field_name):
        return list(draw(sweep_id, field_name, lang_now))[1:3]

    job.change(on_job, [job], [grid, ties, eval_dataset, name], show_progress="hidden")
    start.click(on_start, [job, grid, ties, overrides, eval_dataset, name], [message, pick])
    outputs = [seen, table, charts, axis]
    pick.change(on_pick, [pick, axis, page.language], outputs, show_progress="hidden")
    axis.change(on_pick, [pick, axis, page.language], outputs, show_progress="hidden")
    timer = gr.Timer(2.0)
    timer.tick(on_tick, [seen, pick, axis, page.language], outputs, show_progress="hidden")
    page.also(on_switch, [pick, axis], [table, charts])
    return {"load": (on_job, [job], [grid, ties, eval_dataset, name])}
