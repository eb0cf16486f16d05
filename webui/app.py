"""Assemble the workbench page and serve it."""
from __future__ import annotations

import sys
from pathlib import Path

import gradio as gr

from core.models.loading import preload_model_libraries
from core.runs import scheduler
from core.runtime.disk import make_folder
from core.safety.access import MAX_UPLOAD_BYTES, UPLOAD_CACHE_CLEANUP, AccessPolicy
from core.safety.login import Credentials, login_checker
from webui import i18n
from webui.chat_tab import build_chat_tab, end_session
from webui.data_tab import build_data_tab
from webui.eval_tab import build_eval_tab
from webui.export_tab import build_export_tab
from webui.form import FORM_CSS
from webui.language import PageLanguage
from webui.runs_tab import build_runs_tab
from webui.sweep_tab import build_sweep_tab
from webui.train_tab import build_train_tab


def build_app(workspace: Path, lang: str = "en", policy: AccessPolicy | None = None) -> gr.Blocks:
    """The page. `policy` decides which files its handlers may read and write; by default the served rule
    (the workspace, the bundled data and Gradio's upload folder)."""
    problem = make_folder(workspace)  # a full disk must not stop the UI from starting
    if problem:
        print(f"warning: {problem}", file=sys.stderr)
    policy = policy or server_policy(workspace)
    preload_model_libraries()  # handlers run in threads; see its docstring
    try:
        scheduler.ensure_running(workspace)  # jobs left in the queue by an earlier session start now
    except OSError as err:  # a full disk or an unwritable workspace must not stop the UI from starting either
        print(f"warning: the queue's scheduler could not be started: {err}", file=sys.stderr)
    with gr.Blocks(title="LoRA Workbench", delete_cache=UPLOAD_CACHE_CLEANUP) as demo:
        with gr.Row():
            gr.Markdown(**i18n.props("title", lang))
            language = gr.Radio(choices=[(v, k) for k, v in i18n.LANGUAGES.items()], value=lang,
                                **i18n.props("language", lang))
        page = PageLanguage(lang, language)
        with gr.Tabs() as tabs:
            with gr.Tab(id="train", **i18n.props("tab-train", lang)):
                train = build_train_tab(workspace, page, policy)
            with gr.Tab(id="runs", **i18n.props("tab-runs", lang)) as runs_tab:
                runs = build_runs_tab(workspace, page, train, tabs)
            with gr.Tab(id="sweep", **i18n.props("tab-sweep", lang)):
                sweep = build_sweep_tab(workspace, page, policy)
            with gr.Tab(id="data", **i18n.props("tab-data", lang)):
                build_data_tab(workspace, page, train["form"], policy)
            with gr.Tab(id="chat", **i18n.props("tab-chat", lang)) as chat_tab:
                chat = build_chat_tab(workspace, page, policy)
            with gr.Tab(id="export", **i18n.props("tab-export", lang)) as export_tab:
                export = build_export_tab(workspace, page, policy)
            with gr.Tab(id="evaluate", **i18n.props("tab-evaluate", lang)) as eval_tab:
                evaluate = build_eval_tab(workspace, page, policy)

        page.wire(demo)
        runs_tab.select(*runs["refresh"], show_progress="hidden")
        train["run_ended"].change(*runs["refresh"], show_progress="hidden")
        # Runs finish while the page is open: the run pickers look again when the page loads, when their tab
        # is opened and when a run ends, and then offer a run that became usable since they last looked.
        for tab, pick in ((chat_tab, chat["pick"]), (export_tab, export["pick"]), (eval_tab, evaluate["pick"])):
            tab.select(*pick, show_progress="hidden")
            train["run_ended"].change(*pick, show_progress="hidden")
            demo.load(*pick, show_progress="hidden")
        demo.load(*sweep["load"], show_progress="hidden")  # the picked sweep file's grid in the boxes
        demo.unload(end_session)  # a closed page ends its chat worker
        # Count after the load has put the attached run's job (if any) into the form.
        demo.load(*train["load"], show_progress="hidden").then(*train["count"], show_progress="hidden")
    return demo


def server_policy(workspace: Path, data_roots=(), export_roots=(), blocked=(), allow_remote_code: bool = False) -> AccessPolicy:
    """What the served page may touch: datasets from the workspace, the bundled data and `data_roots`; uploads
    only from Gradio's own upload folder; exports under <workspace>/exports and `export_roots`."""
    from gradio.utils import get_upload_folder

    return AccessPolicy.for_server(workspace, data_roots, export_roots, upload_roots=(get_upload_folder(),),
                                   blocked=blocked, remote_code=allow_remote_code)


def serve(host: str = "127.0.0.1", port: int = 7860, workspace: Path | None = None, credentials: Credentials | None = None,
          data_roots=(), export_roots=(), allow_remote_code: bool = False) -> None:
    """Serve the page. With `credentials` every page, API call and upload needs a login (Gradio's own)."""
    from core.paths import default_workspace

    workspace = workspace or default_workspace()
    blocked = (credentials.source,) if credentials and credentials.source else ()  # the login file is never data
    demo = build_app(workspace, policy=server_policy(workspace, data_roots, export_roots, blocked, allow_remote_code))
    login = {"auth": login_checker(credentials), "auth_message": i18n.text("login.message")} if credentials else {}
    # No footer: its links are Gradio's own words, which the language switch cannot reach. No run history: it
    # keeps every call's inputs and outputs and can copy them to a Hugging Face bucket named in a request.
    demo.queue(default_concurrency_limit=8).launch(server_name=host, server_port=port, show_error=True, footer_links=[],
                                                   max_file_size=MAX_UPLOAD_BYTES, run_history=False, css=FORM_CSS,
                                                   **login)
