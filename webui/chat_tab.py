"""The Chat tab: talk to a finished run (base + adapter) or a base model, optionally with base and
fine-tuned answers side by side from one loaded model.

The model lives in a chat worker process per browser session (core/chat); this file only draws
and forwards. Unload ends that process, so its memory really goes back.
"""
from __future__ import annotations

import html
import re
from pathlib import Path

import gradio as gr

from core.chat.client import ChatClient, ChatWorkerError, check_capacity
from core.chat.options import GenerationOptions
from core.chat.prompt import conversation
from core.chat.targets import ChatTarget, TargetRefused, answering_model, chat_targets, offered_target
from core.options import OptionsError, build_options
from core.runs.folder import active_run
from core.runs.views import pick_run
from core.safety.access import AccessPolicy
from webui import i18n
from webui.form import FieldForm, option_problems
from webui.language import PageLanguage

CLIENTS: dict[str, ChatClient] = {}  # one worker per browser session, ended when the page goes away


def client_for(request: gr.Request, workspace: Path) -> ChatClient:
    key = request.session_hash or "default"
    if key not in CLIENTS:
        # The session id comes from the caller: only its letters and digits may name a file.
        name = re.sub(r"[^A-Za-z0-9]", "", key)[:12] or "default"
        CLIENTS[key] = ChatClient(workspace / "chat" / f"worker-{name}.log")
    return CLIENTS[key]


def end_session(request: gr.Request) -> None:
    client = CLIENTS.pop(request.session_hash or "default", None)
    if client is not None:
        client.unload()


def target_label(target: ChatTarget, lang: str) -> str:
    if target.kind == "run":
        return i18n.text("chat.choice.run", lang, run=target.name)
    return i18n.text("chat.choice.base", lang, model=target.name)


def busy_warning(workspace: Path) -> list:
    run = active_run(workspace)
    return ["\n\n⚠️ ", ["chat.busy_training", {"run": run.run_id}]] if run else []


def loaded_name(loaded: dict) -> str:
    return Path(loaded["run"]).name if loaded.get("run") else loaded.get("base")


def status_parts(loaded: dict | None) -> list:
    if not loaded:
        return [["chat.none_loaded"]]
    return [["chat.loaded", {"what": loaded_name(loaded), "seconds": loaded["load_s"], "pid": loaded["pid"],
                             "rss": loaded["rss_mb"]}]]


def error_parts(err: Exception) -> list:
    return ["**", ["chat.error"], f"** {html.escape(str(err))}"]


def stopped_parts(done: dict) -> list:
    """A note when an answer was cut short: by Stop generation, or at the time limit."""
    if done.get("stopped") == "stop":
        return ["\n\n⏹ ", ["chat.stopped"]]
    if done.get("stopped") == "time_limit":
        return ["\n\n⏱ ", ["chat.time_limit", {"seconds": f"{done.get('time_limit_s', 0):g}"}]]
    return []


def build_chat_tab(workspace: Path, page: PageLanguage, policy: AccessPolicy) -> dict:
    """Draw the tab. Only what its picker offers can be loaded (a run of this workspace or the bundled model),
    whatever a page or an API call sends; `policy` decides whether a run may use its model folder's code."""
    lang = page.lang
    seen_newest = gr.State(None)  # the newest target the picker offered, to notice a run that finished since
    with gr.Row():
        model = gr.Dropdown(choices=[], value=None, scale=4, **i18n.props("chat-model", lang))
        refresh = gr.Button(scale=1, **i18n.props("chat-refresh", lang))
        load = gr.Button(variant="primary", scale=1, **i18n.props("chat-load", lang))
        unload = gr.Button(scale=1, **i18n.props("chat-unload", lang))
    status = page.message("chat-status", [["chat.none_loaded"]])
    system = gr.Textbox(lines=2, **i18n.props("chat-system", lang))
    form = FieldForm(lang)
    with gr.Accordion(open=False, **i18n.props("chat-params", lang)):
        with gr.Row():
            form.render("generation", GenerationOptions)
    compare = gr.Checkbox(value=True, **i18n.props("chat-compare", lang))
    with gr.Row():
        base_box = gr.Chatbot(height=360, **i18n.props("chat-base", lang))
        tuned_box = gr.Chatbot(height=360, **i18n.props("chat-tuned", lang))
    with gr.Row():
        prompt = gr.Textbox(scale=5, **i18n.props("chat-prompt", lang))
        send = gr.Button(variant="primary", scale=1, **i18n.props("chat-send", lang))
        stop = gr.Button(variant="stop", scale=1, **i18n.props("chat-stop", lang))
        clear = gr.Button(scale=1, **i18n.props("chat-clear", lang))
    message = page.message("chat-message")

    def picker(current, seen, lang_now):
        """The picker's entries as they are now, on the newest usable run when one finished since it last looked."""
        targets = chat_targets(workspace)
        keys = [t.key for t in targets]
        return (gr.update(choices=[(target_label(t, lang_now), t.key) for t in targets], value=pick_run(current, seen, keys)),
                keys[0])

    def on_load(choice, request: gr.Request):
        client = client_for(request, workspace)
        try:
            target = offered_target(choice, workspace, policy)
            if target is None:
                return [["chat.pick_first"]], [], []
            check_capacity(CLIENTS.values(), client)
            loaded = client.load(**target.load_args())
        except (ChatWorkerError, TargetRefused) as err:
            return error_parts(err), [], []
        return status_parts(loaded) + busy_warning(workspace), [], []

    def on_unload(request: gr.Request):
        client_for(request, workspace).unload()
        return [["chat.unloaded"]]

    def on_stop(request: gr.Request):
        stopping = client_for(request, workspace).stop()
        return [["chat.stopping" if stopping else "chat.nothing_to_stop"]]

    # The request comes first: Gradio hands it over by position, which the option values after it would shift.
    def on_send(request: gr.Request, text, choice, system_prompt, compare_on, base_hist, tuned_hist, *option_values):
        client = client_for(request, workspace)
        if not text or not text.strip():
            yield gr.skip(), gr.skip(), gr.skip(), [], gr.skip()
            return
        try:
            options = build_options(GenerationOptions, form.group_values("generation", list(option_values)))
        except OptionsError as err:
            yield gr.skip(), gr.skip(), gr.skip(), option_problems("generation", err.problems), gr.skip()
            return
        client.new_turn()
        try:
            picked = offered_target(choice, workspace, policy)
        except TargetRefused as err:
            yield gr.skip(), gr.skip(), gr.skip(), error_parts(err), gr.skip()
            return
        if not client.loaded and picked is not None:
            yield gr.skip(), gr.skip(), gr.skip(), [["chat.loading", {"what": picked.name}]], gr.skip()
        try:
            if not client.loaded:
                check_capacity(CLIENTS.values(), client)
            loaded, just_loaded = answering_model(client, picked)
        except ChatWorkerError as err:
            yield gr.skip(), gr.skip(), gr.skip(), error_parts(err), status_parts(client.loaded)
            return
        note = [] if picked is None or picked.matches(loaded) else [
            ["chat.other_loaded", {"loaded": loaded_name(loaded), "picked": picked.name}]]
        status_now = status_parts(loaded) if just_loaded else gr.skip()
        has_adapter = loaded["has_adapter"]
        targets = ([("base", False)] if not has_adapter else
                   [("base", False), ("tuned", True)] if compare_on else [("tuned", True)])
        histories = {"base": list(base_hist or []), "tuned": list(tuned_hist or [])}
        params = vars(options)
        cut: list = []
        for column, adapter in targets:
            if client.stop_asked.is_set():
                break  # Stop ends this Send: the other column is not started
            # Each column is its own conversation: the model sees only what it said itself.
            messages = conversation(system_prompt, histories[column], text)
            histories[column] += [{"role": "user", "content": text}, {"role": "assistant", "content": ""}]
            try:
                for piece in client.generate(messages, params, adapter=adapter):
                    if isinstance(piece, str):
                        histories[column][-1]["content"] += piece
                        yield "", histories["base"], histories["tuned"], note, status_now
                    else:
                        cut = cut or stopped_parts(piece)
            except ChatWorkerError as err:
                unanswered = not histories[column][-1]["content"]
                if unanswered:  # refused before a word (a limit, say): no empty bubble, and the message stays to edit
                    histories[column] = histories[column][:-2]
                keep_text = unanswered and column == targets[0][0]
                yield (gr.skip() if keep_text else ""), histories["base"], histories["tuned"], error_parts(err), \
                    status_parts(client.loaded)
                return
        yield "", histories["base"], histories["tuned"], note + cut + busy_warning(workspace), status_now

    def on_switch(lang_now):
        return [gr.update(choices=[(target_label(t, lang_now), t.key) for t in chat_targets(workspace)])]

    pick = (picker, [model, seen_newest, page.language], [model, seen_newest])
    refresh.click(*pick)
    load.click(on_load, [model], [status, base_box, tuned_box], api_name="chat_load")
    unload.click(on_unload, None, [status])
    inputs = [prompt, model, system, compare, base_box, tuned_box, *form.group_inputs("generation")]
    send.click(on_send, inputs, [prompt, base_box, tuned_box, message, status], api_name="chat_send")
    prompt.submit(on_send, inputs, [prompt, base_box, tuned_box, message, status])
    stop.click(on_stop, None, [message], show_progress="hidden", api_name="chat_stop")
    clear.click(lambda: ([], []), None, [base_box, tuned_box])
    page.also(on_switch, [], [model])
    # The page refreshes the picker when it loads, when this tab is opened and when a run ends.
    return {"pick": pick}
