"""The Chat tab: talk to a finished run (base + adapter) or a base model, optionally with base and
fine-tuned answers side by side from one loaded model.

The model lives in a chat worker process per browser session (core/chat); this file only draws
and forwards. Unload ends that process, so its memory really goes back.
"""
from __future__ import annotations

import html
from pathlib import Path

import gradio as gr

from core.chat.client import ChatClient, ChatWorkerError
from core.chat.prompt import conversation
from core.models.adapter import USABLE_STATES
from core.runs.folder import active_run, list_runs
from core.spec import BUNDLED_MODEL
from webui import i18n

CLIENTS: dict[str, ChatClient] = {}  # one worker per browser session, ended when the page goes away


def client_for(request: gr.Request, workspace: Path) -> ChatClient:
    key = request.session_hash or "default"
    if key not in CLIENTS:
        CLIENTS[key] = ChatClient(workspace / "chat" / f"worker-{key[:12]}.log")
    return CLIENTS[key]


def end_session(request: gr.Request) -> None:
    client = CLIENTS.pop(request.session_hash or "default", None)
    if client is not None:
        client.unload()


def model_choices(workspace: Path, lang: str) -> list[tuple[str, str]]:
    runs = [r for r in list_runs(workspace)
            if r.status()["state"] in USABLE_STATES and (r.adapter_dir / "adapter_config.json").is_file()]
    return ([(i18n.text("chat.choice.run", lang, run=r.run_id), f"run:{r.path}") for r in runs]
            + [(i18n.text("chat.choice.base", lang, model=BUNDLED_MODEL), f"base:{BUNDLED_MODEL}")])


def busy_warning(workspace: Path, lang: str) -> str:
    run = active_run(workspace)
    return f"\n\n⚠️ {i18n.text('chat.busy_training', lang, run=run.run_id)}" if run else ""


def status_text(loaded: dict | None, lang: str) -> str:
    if not loaded:
        return i18n.text("chat.none_loaded", lang)
    what = Path(loaded["run"]).name if loaded.get("run") else loaded.get("base")
    return i18n.text("chat.loaded", lang, what=what, seconds=loaded["load_s"], pid=loaded["pid"], rss=loaded["rss_mb"])


def build_chat_tab(workspace: Path, lang: str = "en") -> dict:
    lang_state = gr.State(lang)
    with gr.Row():
        choices = model_choices(workspace, lang)
        model = gr.Dropdown(choices=choices, value=choices[0][1], label=i18n.text("chat.model", lang),
                            elem_id="chat-model", scale=4)
        refresh = gr.Button(i18n.text("chat.refresh", lang), elem_id="chat-refresh", scale=1)
        load = gr.Button(i18n.text("chat.load", lang), variant="primary", elem_id="chat-load", scale=1)
        unload = gr.Button(i18n.text("chat.unload", lang), elem_id="chat-unload", scale=1)
    status = gr.Markdown(i18n.text("chat.none_loaded", lang), elem_id="chat-status")
    system = gr.Textbox(label=i18n.text("chat.system", lang), lines=2, elem_id="chat-system")
    with gr.Accordion(i18n.text("chat.params", lang), open=False):
        with gr.Row():
            max_new = gr.Number(value=128, precision=0, minimum=1, maximum=4096, label=i18n.text("chat.max_new_tokens", lang),
                                elem_id="chat-max-new")
            temperature = gr.Number(value=0.0, minimum=0, maximum=5, label=i18n.text("chat.temperature", lang),
                                    info=i18n.text("chat.temperature.help", lang), elem_id="chat-temperature")
            top_p = gr.Number(value=0.9, minimum=0, maximum=1, label="top-p", elem_id="chat-top-p")
            top_k = gr.Number(value=50, precision=0, minimum=0, label="top-k", elem_id="chat-top-k")
            repetition = gr.Number(value=1.0, minimum=0.5, maximum=3, label=i18n.text("chat.repetition_penalty", lang),
                                   elem_id="chat-repetition")
            seed = gr.Number(value=0, precision=0, label=i18n.text("chat.seed", lang), elem_id="chat-seed")
    compare = gr.Checkbox(value=True, label=i18n.text("chat.compare", lang), elem_id="chat-compare")
    with gr.Row():
        base_box = gr.Chatbot(label=i18n.text("chat.column.base", lang), elem_id="chat-base", height=360)
        tuned_box = gr.Chatbot(label=i18n.text("chat.column.tuned", lang), elem_id="chat-tuned", height=360)
    with gr.Row():
        prompt = gr.Textbox(label=i18n.text("chat.prompt", lang), scale=5, elem_id="chat-prompt")
        send = gr.Button(i18n.text("chat.send", lang), variant="primary", scale=1, elem_id="chat-send")
        clear = gr.Button(i18n.text("chat.clear", lang), scale=1, elem_id="chat-clear")
    message = gr.Markdown("", elem_id="chat-message")

    def on_refresh(current, lang_now):
        options = model_choices(workspace, lang_now)
        keep = current if current in [v for _, v in options] else options[0][1]
        return gr.update(choices=options, value=keep)

    def on_page_load(lang_now):
        # The choices were listed when the server started; a fresh page offers the newest finished run.
        options = model_choices(workspace, lang_now)
        return gr.update(choices=options, value=options[0][1])

    def on_load(choice, lang_now, request: gr.Request):
        client = client_for(request, workspace)
        kind, _, target = (choice or "").partition(":")
        try:
            loaded = client.load(run=target) if kind == "run" else client.load(base=target)
        except ChatWorkerError as err:
            return f"**{i18n.text('chat.error', lang_now)}** {html.escape(str(err))}", [], []
        return status_text(loaded, lang_now) + busy_warning(workspace, lang_now), [], []

    def on_unload(lang_now, request: gr.Request):
        client_for(request, workspace).unload()
        return i18n.text("chat.unloaded", lang_now)

    def on_send(text, system_prompt, compare_on, base_hist, tuned_hist, lang_now, n, temp, p, k, rep, seed_value,
                request: gr.Request):
        client = client_for(request, workspace)
        if not text or not text.strip():
            yield gr.skip(), gr.skip(), gr.skip(), ""
            return
        if not client.loaded:
            yield gr.skip(), gr.skip(), gr.skip(), i18n.text("chat.load_first", lang_now)
            return
        params = {"max_new_tokens": n or 128, "temperature": temp or 0.0, "top_p": p or 1.0, "top_k": k or 0,
                  "repetition_penalty": rep or 1.0, "seed": seed_value or 0}
        has_adapter = client.loaded["has_adapter"]
        targets = ([("base", False)] if not has_adapter else
                   [("base", False), ("tuned", True)] if compare_on else [("tuned", True)])
        histories = {"base": list(base_hist or []), "tuned": list(tuned_hist or [])}
        for column, adapter in targets:
            # Each column is its own conversation: the model sees only what it said itself.
            messages = conversation(system_prompt, histories[column], text)
            histories[column] += [{"role": "user", "content": text}, {"role": "assistant", "content": ""}]
            try:
                for piece in client.generate(messages, params, adapter=adapter):
                    if isinstance(piece, str):
                        histories[column][-1]["content"] += piece
                        yield "", histories["base"], histories["tuned"], ""
            except ChatWorkerError as err:
                yield "", histories["base"], histories["tuned"], f"**{i18n.text('chat.error', lang_now)}** {html.escape(str(err))}"
                return
        yield "", histories["base"], histories["tuned"], busy_warning(workspace, lang_now).strip()

    refresh.click(on_refresh, [model, lang_state], [model])
    load.click(on_load, [model, lang_state], [status, base_box, tuned_box])
    unload.click(on_unload, [lang_state], [status])
    inputs = [prompt, system, compare, base_box, tuned_box, lang_state, max_new, temperature, top_p, top_k, repetition, seed]
    send.click(on_send, inputs, [prompt, base_box, tuned_box, message])
    prompt.submit(on_send, inputs, [prompt, base_box, tuned_box, message])
    clear.click(lambda: ([], []), None, [base_box, tuned_box])
    return {"lang_state": lang_state, "refresh": (on_refresh, [model, lang_state], [model]),
            "page_load": (on_page_load, [lang_state], [model])}
