"""Assemble the workbench page and serve it."""
from __future__ import annotations

from pathlib import Path

import gradio as gr

from webui import i18n
from webui.chat_tab import build_chat_tab, end_session
from webui.data_tab import build_data_tab
from webui.export_tab import build_export_tab
from webui.train_tab import build_train_tab


def build_app(workspace: Path, lang: str = "en") -> gr.Blocks:
    workspace.mkdir(parents=True, exist_ok=True)
    with gr.Blocks(title="LoRA Workbench") as demo:
        with gr.Row():
            title = gr.Markdown(f"# {i18n.text('title', lang)}", elem_id="title")
            language = gr.Radio(choices=[(v, k) for k, v in i18n.LANGUAGES.items()], value=lang,
                                label="Language / 语言", elem_id="language")
        with gr.Tabs():
            with gr.Tab(i18n.text("tab.train", lang), id="train", elem_id="tab-train") as train_tab:
                train = build_train_tab(workspace, lang)
            with gr.Tab(i18n.text("tab.data", lang), id="data", elem_id="tab-data") as data_tab:
                data = build_data_tab(workspace, lang, train["form"])
            with gr.Tab(i18n.text("tab.chat", lang), id="chat", elem_id="tab-chat") as chat_tab:
                chat = build_chat_tab(workspace, lang)
            with gr.Tab(i18n.text("tab.export", lang), id="export", elem_id="tab-export") as export_tab:
                export = build_export_tab(workspace, lang)

        def switch_language(lang_new, method_name, view):
            from core.methods import METHODS

            return [
                f"# {i18n.text('title', lang_new)}",
                gr.update(label=i18n.text("tab.train", lang_new)),
                gr.update(label=i18n.text("tab.chat", lang_new)),
                gr.update(label=i18n.text("tab.export", lang_new)),
                lang_new, lang_new,
                i18n.explainer(method_name, METHODS[method_name].EXPLAINER, lang_new),
                *train["relabel"](lang_new, view),
                gr.update(label=i18n.text("tab.data", lang_new)),
                *data["relabel"](lang_new),
            ]

        language.change(switch_language, [language, train["method"], train["view"]],
                        [title, train_tab, chat_tab, export_tab, chat["lang_state"], export["lang_state"],
                         train["explainer"], *train["relabel_outputs"], data_tab, *data["relabel_outputs"]])
        # Runs finish while the page is open: opening a tab lists the runs as they are now.
        chat_tab.select(*chat["refresh"])
        export_tab.select(*export["refresh"])
        demo.unload(end_session)  # a closed page ends its chat worker
        demo.load(*chat["page_load"], show_progress="hidden")
        # Count after the load has put the attached run's job (if any) into the form.
        demo.load(train["load"], train["load_inputs"], train["load_outputs"]).then(
            train["count"], train["count_inputs"], train["count_outputs"], show_progress="hidden")
    return demo


def serve(host: str = "127.0.0.1", port: int = 7860, workspace: Path | None = None) -> None:
    from core.paths import default_workspace

    demo = build_app(workspace or default_workspace())
    demo.queue(default_concurrency_limit=8).launch(server_name=host, server_port=port, show_error=True)
