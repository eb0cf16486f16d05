"""The Data tab: pick, upload or point at a dataset, check it, and see what the model will be trained on.

The preview renders each sample through the chosen model's chat template and
colours trained tokens differently from masked ones, using the labels the
trainer uses (core.data.encode). Pages read only their rows; the histogram is
drawn once per dataset. 'Use for training' fills the Train tab's data fields.
"""
from __future__ import annotations

import html
from functools import lru_cache
from pathlib import Path

import gradio as gr

from core.data.formats import FORMATS
from core.data.preview import length_stats, preview_page
from core.data.registry import DatasetError, list_entries
from core.data.source import CheckReport, check_dataset, open_dataset
from core.data.uploads import parse_columns, save_mapping, store_upload
from webui import i18n
from webui.charts import length_histogram

PAGE_SIZE = 4
STYLE = """<style>
#data-preview .sample{border:1px solid #ccc;border-radius:6px;padding:6px;margin:6px 0;white-space:pre-wrap;
  font-family:monospace;font-size:12px}
#data-preview .tok-train{background:#c8f7c5} #data-preview .tok-mask{color:#777}
#data-preview .tok-cut{text-decoration:line-through;color:#b00} #data-preview .warn{color:#b35c00}
#data-preview .bad{color:#b00}
</style>"""


@lru_cache(maxsize=4)
def tokenizer_for(model_path: str):
    from core.models.loading import load_tokenizer

    return load_tokenizer(model_path)


def registry_choices(registry: str, lang: str) -> list[tuple[str, str]]:
    """Registry entries as dropdown choices; unavailable ones say why in their label."""
    try:
        entries = list_entries(registry)
    except DatasetError:
        return []
    out = []
    for entry, reason in entries:
        label = entry.name if reason is None else f"{entry.name} · {i18n.text('data.unavailable', lang)}: {reason}"
        out.append((label, entry.name))
    return out


def report_markdown(report: CheckReport, lang: str) -> str:
    if report.usable:
        return "✅ " + i18n.text("data.report.ok", lang, samples=report.num_samples, format=report.formatting)
    head = "⛔ " + i18n.text("data.report.bad", lang, problems=report.total_problems or 1)
    return head + "\n\n" + "\n".join(f"- {html.escape(line)}" for line in report.lines())


def sample_html(shown, lang: str) -> str:
    head = f"<b>#{shown.index + 1}</b> · {html.escape(shown.where)}"
    if shown.problem:
        return f"<div class='sample bad' data-index='{shown.index}'>{head}: {html.escape(shown.problem)}</div>"
    spans = []
    for text, trained, cut in shown.tokens:
        css = "tok-cut" if cut else ("tok-train" if trained else "tok-mask")
        spans.append(f"<span class='{css}'>{html.escape(text)}</span>")
    counts = i18n.text("data.tokens", lang, tokens=shown.num_tokens, trained=shown.num_trained)
    warnings = "".join(f"<div class='warn'>⚠ {html.escape(w)}</div>" for w in shown.warnings)
    return (f"<div class='sample' data-index='{shown.index}' data-tokens='{shown.num_tokens}'>"
            f"{head} · {counts}{warnings}<hr>{''.join(spans)}</div>")


def stats_titles(stats, lang: str) -> dict[str, str]:
    title = i18n.text("data.hist.title", lang, median=f"{stats.median:g}", p95=f"{stats.p95:.0f}",
                      share=f"{100 * stats.truncated_share:.1f}", counted=len(stats.lengths), total=stats.total)
    return {"title": title, "x": i18n.text("data.hist.x", lang), "y": i18n.text("data.hist.y", lang),
            "cutoff": i18n.text("data.hist.cutoff", lang, max_length=stats.max_length)}


def build_data_tab(workspace: Path, lang: str, train_form):
    """Draw the tab; `train_form` is the Train tab's JobForm, whose model and data fields it reads and fills."""
    c = train_form.components
    with gr.Row():
        registry = gr.Textbox(value="", label=i18n.text("data.registry", lang), info=i18n.text("data.registry.help", lang),
                              elem_id="data-registry")
        source = gr.Dropdown(choices=registry_choices("", lang), value="identity", allow_custom_value=True,
                             label=i18n.text("data.source", lang), info=i18n.text("data.source.help", lang),
                             elem_id="data-source")
    upload = gr.File(label=i18n.text("data.upload", lang), file_types=[".json", ".jsonl", ".csv", ".parquet", ".txt"],
                     type="filepath", elem_id="data-upload")
    with gr.Row():
        formatting = gr.Dropdown(choices=list(FORMATS), value="auto", label=i18n.text("data.format", lang),
                                 elem_id="data-format")
        columns = gr.Textbox(value="", label=i18n.text("data.columns", lang), info=i18n.text("data.columns.help", lang),
                             elem_id="data-columns")
    with gr.Row():
        open_button = gr.Button(i18n.text("data.open", lang), elem_id="data-open")
        use_button = gr.Button(i18n.text("data.use", lang), variant="primary", elem_id="data-use")
    report = gr.Markdown("", elem_id="data-report")
    with gr.Row():
        prev_button = gr.Button("◀", elem_id="data-prev", scale=0)
        page_label = gr.Markdown("", elem_id="data-page")
        next_button = gr.Button("▶", elem_id="data-next", scale=0)
    preview = gr.HTML(STYLE, elem_id="data-preview")
    histogram = gr.Plot(elem_id="data-histogram", label=i18n.text("data.histogram", lang))
    state = gr.State({"source": None, "start": 0, "total": 0})
    settings = [c["model.path"], c["data.max_length"], c["data.train_on_prompt"], c["data.name"], c["data.author"]]

    def render_page(data, start, lang_now, model, max_length, train_on_prompt, name, author):
        tokenizer = tokenizer_for(model)
        shown = preview_page(data, tokenizer, start, PAGE_SIZE, int(max_length or 512), bool(train_on_prompt),
                             {"name": name, "author": author})
        label = i18n.text("data.page", lang_now, first=start + 1, last=start + len(shown), total=len(data))
        return STYLE + "".join(sample_html(s, lang_now) for s in shown), label

    def on_open(name, registry_value, fmt, cols, lang_now, model, max_length, train_on_prompt, person, author):
        empty = {"source": None, "start": 0, "total": 0}
        if not name:
            return empty, "", STYLE, "", None
        try:
            mapping = parse_columns(cols)
            checked = check_dataset(name, registry_value, formatting=fmt if fmt != "auto" else None,
                                    columns=mapping or None)
            if checked.fatal:
                return empty, report_markdown(checked, lang_now), STYLE, "", None
            data = cached_open(name, registry_value, fmt, cols)
            page, label = render_page(data, 0, lang_now, model, max_length, train_on_prompt, person, author)
            stats = length_stats(data, tokenizer_for(model), int(max_length or 512), bool(train_on_prompt),
                                 {"name": person, "author": author})
        except Exception as err:  # a bad model path, an unreadable file: say so in the tab, never crash the UI
            return empty, f"⛔ {html.escape(type(err).__name__)}: {html.escape(str(err))}", STYLE, "", None
        figure = length_histogram(stats, stats_titles(stats, lang_now))
        note = ""
        if stats.no_stop:
            note = "\n\n⚠ " + i18n.text("data.no_stop", lang_now, count=stats.no_stop)
        chosen = {"source": name, "registry": registry_value, "format": fmt, "columns": cols, "start": 0, "total": len(data)}
        return chosen, report_markdown(checked, lang_now) + note, page, label, figure

    def on_page(current, delta, lang_now, model, max_length, train_on_prompt, person, author):
        if not current.get("source"):
            return current, gr.skip(), gr.skip()
        start = min(max(current["start"] + delta * PAGE_SIZE, 0), max(current["total"] - 1, 0) // PAGE_SIZE * PAGE_SIZE)
        try:
            data = cached_open(current["source"], current["registry"], current["format"], current["columns"])
            page, label = render_page(data, start, lang_now, model, max_length, train_on_prompt, person, author)
        except Exception as err:
            return current, f"⛔ {html.escape(str(err))}", gr.skip()
        return {**current, "start": start}, page, label

    def on_upload(path, registry_value):
        if not path:
            return gr.skip(), gr.skip()
        try:
            stored = store_upload(path, workspace)
        except DatasetError as err:
            return gr.skip(), f"⛔ {html.escape(str(err))}"
        return gr.update(value=str(stored)), ""

    def on_use(current, lang_now):
        """Fill the Train tab's dataset fields; a custom format or mapping is saved in the workspace registry."""
        if not current.get("source"):
            return gr.skip(), gr.skip(), i18n.text("data.use.none", lang_now)
        name, registry_value = current["source"], current["registry"]
        if current["format"] != "auto" or current["columns"].strip():
            path = Path(name)
            if not path.is_file():
                return gr.skip(), gr.skip(), i18n.text("data.use.mapping_file", lang_now)
            registry_value = str(save_mapping(workspace, path.stem, path, current["format"], parse_columns(current["columns"])))
            name = path.stem
        return name, registry_value, i18n.text("data.use.done", lang_now, name=name)

    lang_state = gr.State(lang)
    outputs = [state, report, preview, page_label, histogram]
    inputs = [source, registry, formatting, columns, lang_state, *settings]
    open_button.click(on_open, inputs, outputs)
    source.input(on_open, inputs, outputs)
    upload.upload(on_upload, [upload, registry], [source, report]).then(on_open, inputs, outputs)
    registry.submit(lambda r, lg: gr.update(choices=registry_choices(r, lg), value=None), [registry, lang_state], [source])
    prev_button.click(lambda s, *a: on_page(s, -1, *a), [state, lang_state, *settings], [state, preview, page_label])
    next_button.click(lambda s, *a: on_page(s, 1, *a), [state, lang_state, *settings], [state, preview, page_label])
    use_message = gr.Markdown("", elem_id="data-use-message")
    use_button.click(on_use, [state, lang_state], [c["data.dataset"], c["data.registry"], use_message])

    def relabel(lang_new):
        return [lang_new,
                gr.update(label=i18n.text("data.registry", lang_new), info=i18n.text("data.registry.help", lang_new)),
                gr.update(label=i18n.text("data.source", lang_new), info=i18n.text("data.source.help", lang_new)),
                gr.update(label=i18n.text("data.upload", lang_new)),
                gr.update(label=i18n.text("data.format", lang_new)),
                gr.update(label=i18n.text("data.columns", lang_new), info=i18n.text("data.columns.help", lang_new)),
                gr.update(value=i18n.text("data.open", lang_new)),
                gr.update(value=i18n.text("data.use", lang_new)),
                gr.update(label=i18n.text("data.histogram", lang_new))]

    relabel_outputs = [lang_state, registry, source, upload, formatting, columns, open_button, use_button, histogram]
    return {"relabel": relabel, "relabel_outputs": relabel_outputs}


_OPENED: dict[tuple, tuple[float, object]] = {}


def cached_open(name: str, registry: str, fmt: str, cols: str):
    """The opened dataset for page flips, so a flip reads only its rows; reopened when the file changes."""
    from core.data.registry import find_dataset

    entry = find_dataset(name, registry)
    stamp = entry.path.stat().st_mtime if entry.path else 0.0
    key = (name, registry, fmt, cols)
    if key not in _OPENED or _OPENED[key][0] != stamp:
        if len(_OPENED) > 8:
            _OPENED.clear()
        _OPENED[key] = (stamp, open_dataset(name, registry, fmt if fmt != "auto" else None, parse_columns(cols) or None))
    return _OPENED[key][1]
