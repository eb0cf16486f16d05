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
from core.safety.access import AccessDenied, AccessPolicy
from core.spec import JobSpec, SpecError, spec_from_dict
from webui import i18n
from webui.charts import length_histogram
from webui.language import PageLanguage
from webui.train_tab import spec_problems

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


def registry_choices(registry: str, lang: str, policy: AccessPolicy) -> list[tuple[str, str]]:
    """Registry entries as dropdown choices; unavailable ones say why in their label."""
    try:
        entries = list_entries(registry, policy)
    except DatasetError:
        return []
    out = []
    for entry, reason in entries:
        label = entry.name if reason is None else f"{entry.name} · {i18n.text('data.unavailable', lang)}: {reason}"
        out.append((label, entry.name))
    return out


def report_parts(report: CheckReport) -> list:
    """The check's verdict as message parts; the problem lines themselves are core's (they quote the data)."""
    if report.usable:
        return ["✅ ", ["data.report.ok", {"samples": report.num_samples, "format": report.formatting}]]
    head = ["⛔ ", ["data.report.bad", {"problems": report.total_problems or 1}]]
    return head + ["\n\n" + "\n".join(f"- {html.escape(line)}" for line in report.lines())]


def sample_html(shown, lang: str) -> str:
    head = f"<b>#{shown.index + 1}</b> · {html.escape(shown.where)}"
    if shown.problem:
        return f"<div class='sample bad' data-index='{shown.index}'>{head}: {html.escape(shown.problem)}</div>"
    spans = []
    for text, trained, cut in shown.tokens:
        css = "tok-cut" if cut else ("tok-train" if trained else "tok-mask")
        spans.append(f"<span class='{css}'>{html.escape(text)}</span>")
    counts = i18n.text("data.tokens", lang, tokens=shown.num_tokens, trained=shown.num_trained)
    warnings = "".join(f"<div class='warn'>⚠ {html.escape(i18n.text(f'data.warn.{code}', lang, **values))}</div>"
                       for code, values in shown.warnings)
    return (f"<div class='sample' data-index='{shown.index}' data-tokens='{shown.num_tokens}'>"
            f"{head} · {counts}{warnings}<hr>{''.join(spans)}</div>")


def stats_titles(stats, lang: str) -> dict[str, str]:
    title = i18n.text("data.hist.title", lang, median=f"{stats.median:g}", p95=f"{stats.p95:.0f}",
                      share=f"{100 * stats.truncated_share:.1f}", counted=len(stats.lengths), total=stats.total)
    return {"title": title, "x": i18n.text("data.hist.x", lang), "y": i18n.text("data.hist.y", lang),
            "cutoff": i18n.text("data.hist.cutoff", lang, max_length=stats.max_length)}


def preview_job(model, max_length, train_on_prompt, name, author) -> JobSpec:
    """The Train form's fields the preview reads, checked by the job spec's own rules (types, bounds), so a
    value a page or an API call sends is used only as a job could use it; SpecError names each bad field."""
    return spec_from_dict({"model": {"path": model},
                           "data": {"max_length": max_length, "train_on_prompt": train_on_prompt, "name": name,
                                    "author": author}})


EMPTY = {"source": None, "start": 0, "total": 0, "stats": None}


def build_data_tab(workspace: Path, page: PageLanguage, train_form, policy: AccessPolicy):
    """Draw the tab; `train_form` is the Train tab's JobForm, whose model and data fields it reads and fills.
    Every file it reads (datasets, registries, uploads) goes through `policy`, the server's access rule."""
    lang = page.lang
    c = train_form.components
    with gr.Row():
        registry = gr.Textbox(value="", **i18n.props("data-registry", lang))
        source = gr.Dropdown(choices=registry_choices("", lang, policy), value="identity", allow_custom_value=True,
                             **i18n.props("data-source", lang))
    # An upload button rather than a drop zone: its whole text is ours, so it follows the language switch.
    upload = gr.UploadButton(file_types=[".json", ".jsonl", ".csv", ".parquet", ".txt"], type="filepath",
                             **i18n.props("data-upload", lang))
    with gr.Row():
        formatting = gr.Dropdown(choices=list(FORMATS), value="auto", **i18n.props("data-format", lang))
        columns = gr.Textbox(value="", **i18n.props("data-columns", lang))
    with gr.Row():
        open_button = gr.Button(**i18n.props("data-open", lang))
        use_button = gr.Button(variant="primary", **i18n.props("data-use", lang))
    report = page.message("data-report")
    with gr.Row():
        prev_button = gr.Button("◀", elem_id="data-prev", scale=0)
        page_label = page.message("data-page")
        next_button = gr.Button("▶", elem_id="data-next", scale=0)
    preview = gr.HTML(STYLE, elem_id="data-preview")
    histogram = gr.Plot(**i18n.props("data-histogram", lang))
    use_message = page.message("data-use-message")
    state = gr.State(dict(EMPTY))
    settings = [c["model.path"], c["data.max_length"], c["data.train_on_prompt"], c["data.name"], c["data.author"]]

    def render_page(data, start, lang_now, model, max_length, train_on_prompt, name, author):
        job = preview_job(model, max_length, train_on_prompt, name, author)
        tokenizer = tokenizer_for(job.model.path)
        shown = preview_page(data, tokenizer, start, PAGE_SIZE, job.data.max_length, job.data.train_on_prompt,
                             {"name": job.data.name, "author": job.data.author})
        label = [["data.page", {"first": start + 1, "last": start + len(shown), "total": len(data)}]]
        return STYLE + "".join(sample_html(s, lang_now) for s in shown), label

    def on_open(name, registry_value, fmt, cols, lang_now, model, max_length, train_on_prompt, person, author):
        if not name:
            return dict(EMPTY), [], STYLE, [], None
        try:
            job = preview_job(model, max_length, train_on_prompt, person, author)
        except SpecError as err:  # the Train form's values as an API call may send them: checked as a job's are
            return dict(EMPTY), spec_problems(err), STYLE, [], None
        try:
            mapping = parse_columns(cols)
            checked = check_dataset(name, registry_value, formatting=fmt if fmt != "auto" else None,
                                    columns=mapping or None, policy=policy)
            if checked.fatal:
                return dict(EMPTY), report_parts(checked), STYLE, [], None
            data = cached_open(name, registry_value, fmt, cols, policy)
            shown, label = render_page(data, 0, lang_now, model, max_length, train_on_prompt, person, author)
            stats = length_stats(data, tokenizer_for(job.model.path), job.data.max_length, job.data.train_on_prompt,
                                 {"name": job.data.name, "author": job.data.author})
        except Exception as err:  # a bad model path, an unreadable file: say so in the tab, never crash the UI
            return dict(EMPTY), [f"⛔ {html.escape(type(err).__name__)}: {html.escape(str(err))}"], STYLE, [], None
        figure = length_histogram(stats, stats_titles(stats, lang_now))
        note = ["\n\n⚠ ", ["data.no_stop", {"count": stats.no_stop}]] if stats.no_stop else []
        chosen = {"source": name, "registry": registry_value, "format": fmt, "columns": cols, "start": 0,
                  "total": len(data), "stats": stats}
        return chosen, report_parts(checked) + note, shown, label, figure

    def on_page(current, delta, lang_now, model, max_length, train_on_prompt, person, author):
        if not current.get("source"):
            return current, gr.skip(), gr.skip()
        start = min(max(current["start"] + delta * PAGE_SIZE, 0), max(current["total"] - 1, 0) // PAGE_SIZE * PAGE_SIZE)
        try:
            data = cached_open(current["source"], current["registry"], current["format"], current["columns"], policy)
            shown, label = render_page(data, start, lang_now, model, max_length, train_on_prompt, person, author)
        except Exception as err:
            return current, f"⛔ {html.escape(str(err))}", gr.skip()
        return {**current, "start": start}, shown, label

    def on_upload(path):
        if not path:
            return gr.skip(), gr.skip()
        try:
            stored = store_upload(policy.check_upload(path), workspace)
        except (DatasetError, AccessDenied) as err:
            return gr.skip(), [f"⛔ {html.escape(str(err))}"]
        return gr.update(value=str(stored)), []

    def on_use(current):
        """Fill the Train tab's dataset fields; a custom format or mapping is saved in the workspace registry."""
        if not current.get("source"):
            return gr.skip(), gr.skip(), [["data.use.none"]]
        name, registry_value = current["source"], current["registry"]
        if current["format"] != "auto" or current["columns"].strip():
            path = Path(name)
            if not path.is_file():
                return gr.skip(), gr.skip(), [["data.use.mapping_file"]]
            registry_value = str(save_mapping(workspace, path.stem, path, current["format"], parse_columns(current["columns"])))
            name = path.stem
        return name, registry_value, [["data.use.done", {"name": name}]]

    def on_switch(lang_now, current, registry_value, *page_settings):
        """The dropdown's worded entries, the preview page and the histogram, again in the new language."""
        choices = gr.update(choices=registry_choices(registry_value, lang_now, policy))
        if not current.get("source"):
            return [choices, gr.skip(), gr.skip()]
        _, shown, _ = on_page(current, 0, lang_now, *page_settings)
        return [choices, shown, length_histogram(current["stats"], stats_titles(current["stats"], lang_now))]

    outputs = [state, report, preview, page_label, histogram]
    inputs = [source, registry, formatting, columns, page.language, *settings]
    # Named endpoints: the HTTP API (and the tests that attack it) call these by name.
    open_button.click(on_open, inputs, outputs, api_name="data_open")
    source.input(on_open, inputs, outputs)
    upload.upload(on_upload, [upload], [source, report], api_name="data_upload").then(on_open, inputs, outputs)
    registry.submit(lambda r, lg: gr.update(choices=registry_choices(r, lg, policy), value=None), [registry, page.language],
                    [source], api_name="data_registry")
    prev_button.click(lambda s, *a: on_page(s, -1, *a), [state, page.language, *settings], [state, preview, page_label])
    next_button.click(lambda s, *a: on_page(s, 1, *a), [state, page.language, *settings], [state, preview, page_label])
    use_button.click(on_use, [state], [c["data.dataset"], c["data.registry"], use_message])
    page.also(on_switch, [state, registry, *settings], [source, preview, histogram])


_OPENED: dict[tuple, tuple[float, object]] = {}


def cached_open(name: str, registry: str, fmt: str, cols: str, policy: AccessPolicy):
    """The opened dataset for page flips, so a flip reads only its rows; reopened when the file changes."""
    from core.data.registry import find_dataset

    entry = find_dataset(name, registry, policy)
    stamp = entry.path.stat().st_mtime if entry.path else 0.0
    key = (name, registry, fmt, cols)
    if key not in _OPENED or _OPENED[key][0] != stamp:
        if len(_OPENED) > 8:
            _OPENED.clear()
        _OPENED[key] = (stamp, open_dataset(name, registry, fmt if fmt != "auto" else None, parse_columns(cols) or None,
                                            policy))
    return _OPENED[key][1]
