"""Assemble the workbench page and serve it."""
from __future__ import annotations

from pathlib import Path

import gradio as gr

from webui import i18n
from webui.chat_tab import build_chat_tab, end_session
from webui.data_tab import build_data_tab
from webui.eval_tab import build_eval_tab
from webui.export_tab import build_export_tab
from webui.language import PageLanguage
from webui.train_tab import build_train_tab


def build_app(workspace: Path, lang: str = "en") -> gr.Blocks:
    workspace.mkdir(parents=True, exist_ok=True)
    with gr.Blocks(title="LoRA Workbench") as demo:
        with gr.Row():
            gr.Markdown(**i18n.props("title", lang))
            language = gr.Radio(choices=[(v, k) for k, v in i18n.LANGUAGES.items()], value=lang,
                                **i18n.props("language", lang))
        page = PageLanguage(lang, language)
        with gr.Tabs():
            with gr.Tab(id="train", **i18n.props("tab-train", lang)):
                train = build_train_tab(workspace, page)
            with gr.Tab(id="data", **i18n.props("tab-data", lang)):
                build_data_tab(workspace, page, train["form"])
            with gr.Tab(id="chat", **i18n.props("tab-chat", lang)) as chat_tab:
                chat = build_chat_tab(workspace, page)
            with gr.Tab(id="export", **i18n.props("tab-export", lang)) as export_tab:
                export = build_export_tab(workspace, page)
            with gr.Tab(id="evaluate", **i18n.props("tab-evaluate", lang)) as eval_tab:
                evaluate = build_eval_tab(workspace, page)

        page.wire(demo)
        # Runs finish while the page is open: the run pickers look again when the page loads, when their tab
        # is opened and when a run ends, and then offer a run that became usable since they last looked.
        for tab, pick in ((chat_tab, chat["pick"]), (export_tab, export["pick"]), (eval_tab, evaluate["pick"])):
            tab.select(*pick, show_progress="hidden")
            train["run_ended"].change(*pick, show_progress="hidden")
            demo.load(*pick, show_progress="hidden")
        demo.unload(end_session)  # a closed page ends its chat worker
        # Count after the load has put the attached run's job (if any) into the form.
        demo.load(*train["load"], show_progress="hidden").then(*train["count"], show_progress="hidden")
    return demo


def serve(host: str = "127.0.0.1", port: int = 7860, workspace: Path | None = None) -> None:
    from core.paths import default_workspace

    demo = build_app(workspace or default_workspace())
    # No footer: its links are Gradio's own words, which the language switch cannot reach.
    demo.queue(default_concurrency_limit=8).launch(server_name=host, server_port=port, show_error=True, footer_links=[])
