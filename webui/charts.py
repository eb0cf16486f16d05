"""Plotly figures drawn from metrics.jsonl records."""
from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots

# (metric key, subplot title key) in the order the panels appear.
PANELS = [
    ("loss", "chart.loss"),
    ("learning_rate", "chart.learning_rate"),
    ("grad_norm", "chart.grad_norm"),
    ("tokens_per_second", "chart.tokens_per_second"),
    ("memory_mb", "chart.memory_mb"),
]


def training_figure(records: list[dict], titles: dict[str, str], resumed_at: list[int] = ()) -> go.Figure:
    """One figure, one panel per metric; eval loss joins the loss panel when present. A resumed run is one
    continuous curve; each step where an attempt took over is marked with a dashed line."""
    fig = make_subplots(rows=2, cols=3, subplot_titles=[titles[t] for _, t in PANELS], vertical_spacing=0.18)
    for index, (key, _) in enumerate(PANELS):
        row, col = divmod(index, 3)
        points = [(r["step"], r[key]) for r in records if r.get(key) is not None]
        fig.add_trace(
            go.Scatter(x=[p[0] for p in points], y=[p[1] for p in points], mode="lines+markers", name=titles[PANELS[index][1]],
                       marker={"size": 4}),
            row=row + 1, col=col + 1,
        )
        if key == "loss":
            evals = [(r["step"], r["eval_loss"]) for r in records if r.get("eval_loss") is not None]
            if evals:
                fig.add_trace(go.Scatter(x=[p[0] for p in evals], y=[p[1] for p in evals], mode="lines+markers",
                                         name=titles.get("chart.eval_loss", "eval loss")), row=1, col=1)
    for step in resumed_at:
        mark_resume(fig, step, titles.get("chart.resumed", "resumed"), len(PANELS))
    fig.update_layout(height=520, showlegend=False, margin={"l": 40, "r": 20, "t": 40, "b": 30}, uirevision="keep")
    fig.update_xaxes(title_text=titles.get("chart.step", "step"), title_standoff=2)
    return fig


def mark_resume(fig: go.Figure, step: int, label: str, panels: int) -> None:
    """A dashed vertical line at `step` on each of the first `panels` panels, labelled on the first."""
    for index in range(panels):
        row, col = divmod(index, 3)
        # Annotation arguments only where the label goes: plotly writes "new text" on a line given a position
        # without a text.
        labelled = {"annotation_text": label, "annotation_position": "top left"} if index == 0 else {}
        fig.add_vline(x=step, line_dash="dash", line_color="grey", line_width=1, row=row + 1, col=col + 1, **labelled)


# (metric, title key) of the Compare panels
COMPARE_PANELS = [
    ("loss", "chart.loss"),
    ("eval_loss", "chart.eval_loss"),
    ("learning_rate", "chart.learning_rate"),
    ("tokens_per_second", "chart.tokens_per_second"),
    ("memory_mb", "chart.memory_mb"),
]
COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]


def compare_figure(runs: list[tuple[str, dict]], titles: dict[str, str], x_title: str) -> go.Figure:
    """Several runs overlaid: one panel per metric, one colour per run (named in the legend).
    `runs` holds (label, {metric: (xs, ys)}) pairs."""
    fig = make_subplots(rows=2, cols=3, subplot_titles=[titles[t] for _, t in COMPARE_PANELS], vertical_spacing=0.18)
    for number, (label, curves) in enumerate(runs):
        colour = COLOURS[number % len(COLOURS)]
        for index, (metric, _) in enumerate(COMPARE_PANELS):
            xs, ys = curves.get(metric, ([], []))
            row, col = divmod(index, 3)
            fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines+markers", name=label, legendgroup=label,
                                     showlegend=index == 0, line={"color": colour}, marker={"size": 3}),
                          row=row + 1, col=col + 1)
    fig.update_layout(height=560, margin={"l": 40, "r": 20, "t": 40, "b": 30}, legend={"orientation": "h", "y": -0.12})
    fig.update_xaxes(title_text=x_title, title_standoff=2)
    return fig


def length_histogram(stats, titles: dict[str, str]) -> go.Figure:
    """Token lengths with the max-length cutoff drawn; the title says what share it would cut."""
    fig = go.Figure(go.Histogram(x=stats.lengths, nbinsx=40, name=titles["x"]))
    fig.add_vline(x=stats.max_length, line_dash="dash", line_color="red",
                  annotation_text=titles["cutoff"], annotation_position="top right")
    fig.update_layout(title=titles["title"], height=320, margin={"l": 40, "r": 20, "t": 50, "b": 40},
                      xaxis_title=titles["x"], yaxis_title=titles["y"], showlegend=False)
    return fig


def has_ranks(records: list[dict]) -> bool:
    return any(r.get("ranks") for r in records)


def ranks_figure(records: list[dict], title: str, step_label: str = "step", rank_label: str = "rank") -> go.Figure:
    """AdaLoRA's rank per adapted layer over the run: one row per layer, one column per logged step."""
    points = [r for r in records if r.get("ranks")]
    layers = list(points[0]["ranks"]) if points else []
    steps = [r["step"] for r in points]
    z = [[r["ranks"].get(layer) for r in points] for layer in layers]
    fig = go.Figure(go.Heatmap(x=steps, y=layers, z=z, colorscale="Viridis", colorbar={"title": rank_label},
                               hovertemplate="step %{x}<br>%{y}<br>rank %{z}<extra></extra>"))
    fig.update_layout(title=title, height=max(260, 14 * len(layers) + 120), margin={"l": 40, "r": 20, "t": 40, "b": 30},
                      uirevision="keep")
    fig.update_xaxes(title_text=step_label)
    fig.update_yaxes(autorange="reversed", tickfont={"size": 9})
    return fig


# (metrics.jsonl map of GPU id -> value, subplot title key); see core/runtime/telemetry.py
GPU_PANELS = [
    ("gpu_memory_mb", "chart.gpu_memory_mb"),
    ("gpu_utilization", "chart.gpu_utilization"),
    ("gpu_power_w", "chart.gpu_power_w"),
]


def has_gpu_metrics(records: list[dict]) -> bool:
    return any(r.get(key) for r in records for key, _ in GPU_PANELS)


def gpu_figure(records: list[dict], titles: dict[str, str]) -> go.Figure:
    """Per-GPU memory used, utilisation and power over the run: one panel each, one line per GPU."""
    fig = make_subplots(rows=1, cols=3, subplot_titles=[titles[t] for _, t in GPU_PANELS])
    gpus = sorted({gpu for r in records for key, _ in GPU_PANELS for gpu in (r.get(key) or {})}, key=int)
    for col, (key, _) in enumerate(GPU_PANELS, start=1):
        for gpu in gpus:
            points = [(r["step"], r[key][gpu]) for r in records if gpu in (r.get(key) or {})]
            if not points:  # e.g. a board that reports no power: no empty line in that panel
                continue
            fig.add_trace(go.Scatter(x=[p[0] for p in points], y=[p[1] for p in points], mode="lines+markers",
                                     name=f"GPU {gpu}", legendgroup=gpu, showlegend=col == 1, marker={"size": 4}),
                          row=1, col=col)
    fig.update_layout(height=300, margin={"l": 40, "r": 20, "t": 40, "b": 30}, uirevision="keep")
    fig.update_xaxes(title_text=titles.get("chart.step", "step"), title_standoff=2)
    return fig


def sweep_figure(xs: list, series: dict[str, list], memory: list, titles: dict[str, str]) -> go.Figure:
    """A sweep's figures against one swept field: each score (and loss) on the left, peak memory on the right.
    x values are shown as categories, in the order the sweep ran them, so 4, 8, 16 and lora, qlora both read."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=[titles["sweep.chart.scores"], titles["sweep.chart.memory"]])
    labels = [str(x) for x in xs]
    for name, values in series.items():
        fig.add_trace(go.Scatter(x=labels, y=values, mode="markers", name=name, marker={"size": 9}), row=1, col=1)
    fig.add_trace(go.Scatter(x=labels, y=memory, mode="markers", name=titles["sweep.chart.memory"],
                             marker={"size": 9, "symbol": "square"}), row=1, col=2)
    fig.update_xaxes(type="category", title_text=titles["sweep.chart.field"])
    fig.update_layout(height=380, margin={"l": 40, "r": 20, "t": 40, "b": 30}, uirevision="keep")
    return fig
