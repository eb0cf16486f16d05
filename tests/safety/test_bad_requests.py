"""Bad requests to the served app, as a table: each row is one input a logged-in caller sends over HTTP to the
Data, Train, Chat or Export tab's endpoint (or to the server's own routes), and what must come back: a refusal
naming the field or the place at fault. Every answer is also held to the rules for all of them: no traceback,
nothing from the secret files outside the allowed folders, nothing written outside the workspace, and the
server still answers afterwards. (Bad job specs, YAML, data files and model folders have their own table in
test_bad_inputs.py.)"""
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import httpx
import pytest
from gradio_client.exceptions import AppError

from core.paths import PROJECT_ROOT
from tests.safety.conftest import CANARY, DATA_REST, PASSWORD, USER
from webui.form import field_id


@dataclass(frozen=True)
class Case:
    name: str
    what: str  # the input, in words
    send: Callable  # (client, served) -> the text the caller gets back
    expect: tuple[str, ...]  # all of these are in that text ("a|b": either a or b)


def answer(client, api_name: str, *values, message: str) -> str:
    """Call an endpoint and return what its message box says then; Gradio's own refusals (a value not among a
    picker's choices, say) come back as the error's text."""
    try:
        client.predict(*values, api_name=api_name)
    except AppError as err:
        return f"refused by Gradio: {err}"
    return client.predict("en", api_name=f"/message_{message}")


def data_open(name: str, registry: str = "", **settings) -> Callable:
    rest = dict(zip(("fmt", "cols", "lang", "model", "max_length", "train_on_prompt", "person", "author"), DATA_REST))
    rest.update(settings)
    return lambda c, s: answer(c, "/data_open", name.format(**s), registry.format(**s), *rest.values(),
                               message="data_report")


def data_registry(registry: str) -> Callable:
    def send(c, s):
        listed = c.predict(registry.format(**s), "en", api_name="/data_registry")
        return f"choices: {listed.get('choices') if isinstance(listed, dict) else listed}"
    return send


def data_upload(path: str) -> Callable:
    """The upload endpoint called by hand with a file path of the caller's choosing (a browser sends only paths
    Gradio gave it for an upload)."""
    def send(c, s):
        with httpx.Client(base_url=s["url"], timeout=60) as session:
            session.post("/login", data={"username": USER, "password": PASSWORD})
            event = session.post("/gradio_api/call/data_upload", json={"data": [
                {"path": path.format(**s), "meta": {"_type": "gradio.FileData"}}]}).json()["event_id"]
            return session.get(f"/gradio_api/call/data_upload/{event}").text
    return send


def train_start(**fields) -> Callable:
    """Start from the Train form's defaults (the tiny model), with `fields` (dotted names) changed."""
    def send(c, s):
        values = train_defaults(c, s)
        for dotted, value in {"model.path": str(s["model"]), **fields}.items():
            values[train_positions(s)[dotted]] = value.format(**s) if isinstance(value, str) else value
        return answer(c, "/train_start", *values, message="train_message")
    return send


def chat_send(text: str = "hi", choice=None, **options) -> Callable:
    defaults = {"max_new_tokens": 8, "temperature": 0.0, "top_p": 0.9, "top_k": 50, "repetition_penalty": 1.0,
                "seed": 0, "max_prompt_chars": 32000, "max_prompt_tokens": 4096, "time_limit_s": 120.0}
    values = {**defaults, **options}
    return lambda c, s: answer(c, "/chat_send", text, choice.format(**s) if choice else choice, "", True, [], [],
                               *values.values(), message="chat_message")


def chat_load(choice: str) -> Callable:
    return lambda c, s: answer(c, "/chat_load", choice.format(**s), message="chat_status")


def export_start(run: str = "{run}", out: str = "", shard_size: str = "2GB", dtype: str = "float32",
                 gguf=(), ollama: bool = False, system: str = "") -> Callable:
    return lambda c, s: answer(c, "/export_start", run.format(**s), out.format(**s), shard_size, dtype, list(gguf),
                               ollama, system, message="export_message")


def http(method: str, path: str, login: bool = True, **kwargs) -> Callable:
    """A raw request; the answer is its status code and the start of its body."""
    def send(c, s):
        with httpx.Client(base_url=s["url"], timeout=60) as session:
            if login:
                session.post("/login", data={"username": USER, "password": PASSWORD})
            got = session.request(method, path.format(**s), **kwargs)
        return f"{got.status_code} {got.text[:2000]}"
    return send


OUTSIDE = "outside the folders this server reads from"
NOT_WRITTEN = "outside the folders this server writes exports to"
# The Chat picker's own check (Gradio's, against the choices it was given) or ours, whichever answers first.
NOT_OFFERED = "not a finished run of this workspace|not in the list of choices|not offered"

CASES = [
    # Data tab: datasets only from the workspace, the bundled data and --data-root.
    Case("data-absolute-outside", "a dataset path outside every root", data_open("{secret}"), (OUTSIDE,)),
    Case("data-list-one-outside", "two datasets, one of them outside (the tab opens one: the text is one name)",
         data_open("{workspace}/data/mine.jsonl,{secret}"), ("file not found",)),
    Case("data-etc-passwd", "/etc/passwd", data_open("/etc/passwd"), (OUTSIDE,)),
    Case("data-proc-environ", "/proc/self/environ (the server's environment)", data_open("/proc/self/environ"), (OUTSIDE,)),
    Case("data-home", "~/.bashrc", data_open("~/.bashrc"), (OUTSIDE,)),
    Case("data-relative-dotdot", "a relative path climbing out of the working folder", data_open("../../../../etc/passwd"),
         (OUTSIDE,)),
    Case("data-dotdot-from-inside", "a path that starts in the workspace and climbs out",
         data_open("{workspace}/data/../../outside/secret.jsonl"), (OUTSIDE,)),
    Case("data-symlink-out", "a symlink in the workspace pointing outside", data_open("{workspace}/data/link.jsonl"),
         (OUTSIDE,)),
    Case("data-next-to-root", "a folder whose name only starts like the --data-root",
         data_open("{extra}-not/listed.jsonl"), (OUTSIDE,)),
    Case("data-nul", "a NUL byte in the path", data_open("{workspace}/data/mine.jsonl\x00.txt"), ("not a usable path",)),
    Case("data-long-name", "a 5000-character file name in the workspace", data_open("{workspace}/data/" + "x" * 5000),
         ("1 problem", "in the registry")),
    Case("data-login-file", "the server's own login file (inside a root or not)", data_open("{users}"),
         ("not readable through the web UI",)),
    Case("data-registry-outside", "a registry outside every root", data_open("x", "{outside}/dataset_info.json"),
         (OUTSIDE, "dataset registry")),
    Case("data-registry-passwd", "/etc/passwd as the registry", data_open("x", "/etc/passwd"), (OUTSIDE,)),
    Case("data-registry-entry-out", "a registry in the workspace whose entry points outside",
         data_open("escape", "{workspace}/data/escape.json"), (OUTSIDE,)),
    Case("data-list-outside-registry", "listing a registry outside every root", data_registry("{outside}/dataset_info.json"),
         ("choices: []",)),
    Case("data-max-length-negative", "preview max length -5", data_open("identity", max_length=-5),
         ("data.max_length", "below the minimum 16")),
    Case("data-max-length-huge", "preview max length 10^12", data_open("identity", max_length=10**12),
         ("data.max_length", "above the maximum")),
    Case("data-max-length-text", "preview max length 'lots'", data_open("identity", max_length="lots"),
         ("refused by Gradio", "Expected a `float")),
    Case("data-model-not-a-model", "/etc as the preview's model", data_open("identity", model="/etc"),
         ("no config.json",)),
    Case("data-upload-forged", "an upload whose path is a file outside", data_upload("{secret}"), ("event: error",)),
    Case("data-upload-workspace", "an upload whose path is a workspace file (not Gradio's upload folder)",
         data_upload("{workspace}/data/mine.jsonl"), ("event: error",)),
    Case("data-upload-dotdot", "an upload path that starts in Gradio's upload folder and climbs out",
         data_upload("{uploads}/../../../../../../etc/passwd"), ("event: error",)),
    # Train tab: the same rule for the job's data; no code from model folders unless the operator allowed it.
    Case("train-data-outside", "data.dataset outside every root", train_start(**{"data.dataset": "{secret}"}),
         ("data.dataset", OUTSIDE)),
    Case("train-data-list-one-outside", "a list of datasets, one of them outside",
         train_start(**{"data.dataset": "identity,{secret}"}), ("data.dataset", OUTSIDE)),
    Case("train-registry-outside", "data.registry outside every root",
         train_start(**{"data.registry": "{outside}/dataset_info.json"}), ("data.registry", OUTSIDE)),
    Case("train-data-proc", "/proc/self/environ as the dataset", train_start(**{"data.dataset": "/proc/self/environ"}),
         ("data.dataset", OUTSIDE)),
    Case("train-remote-code", "model.trust_remote_code on a server started without --allow-remote-code",
         train_start(**{"model.trust_remote_code": True}), ("model.trust_remote_code", "--allow-remote-code")),
    Case("train-model-etc", "/etc as model.path", train_start(**{"model.path": "/etc"}), ("model.path", "no config.json")),
    Case("train-max-length-huge", "data.max_length 10^12", train_start(**{"data.max_length": 10**12}),
         ("data.max_length", "above the maximum")),
    Case("train-preset-path", "a preset name that is a path", lambda c, s: answer(c, "/train_preset", "../../etc/passwd",
                                                                                   message="train_message"),
         ("refused by Gradio", "not in the list of choices")),
    # Chat tab: only the runs and base models its picker offers; limits on the conversation and the answer.
    Case("chat-load-folder-outside", "a run folder outside the workspace", chat_load("run:{outside}"),
         (NOT_OFFERED,)),
    Case("chat-load-dotdot", "a run id climbing out of the runs folder", chat_load("run:../../outside"),
         (NOT_OFFERED,)),
    Case("chat-load-base-etc", "/etc as a base model", chat_load("base:/etc"), (NOT_OFFERED,)),
    Case("chat-send-nothing-picked", "a message with no model picked", chat_send(), ("nothing is picked",)),
    Case("chat-send-forged-target", "a message naming a base model the picker does not offer",
         chat_send(choice="base:{outside}"), (NOT_OFFERED,)),
    Case("chat-tokens-zero", "max_new_tokens 0", chat_send(max_new_tokens=0), ("max_new_tokens", "below the minimum 1")),
    Case("chat-tokens-huge", "max_new_tokens 10^6", chat_send(max_new_tokens=10**6), ("max_new_tokens", "above the maximum")),
    Case("chat-prompt-chars-huge", "max_prompt_chars 10^9 (to lift the prompt limit)",
         chat_send(max_prompt_chars=10**9), ("max_prompt_chars", "above the maximum 500000")),
    Case("chat-time-limit-huge", "time_limit_s 10^6 (to lift the time limit)", chat_send(time_limit_s=1e6),
         ("time_limit_s", "above the maximum")),
    Case("chat-time-limit-zero", "time_limit_s 0", chat_send(time_limit_s=0), ("time_limit_s", "below the minimum")),
    Case("chat-temperature-negative", "temperature -1", chat_send(temperature=-1), ("temperature", "below the minimum")),
    Case("chat-stop-idle", "Stop generation with nothing generating", lambda c, s: answer(c, "/chat_stop",
                                                                                           message="chat_message"),
         ("No answer is being generated",)),
    # Export tab: runs of this workspace only, output under <workspace>/exports or --export-root, bounded sizes.
    Case("export-out-outside", "an output folder outside the export roots", export_start(out="{outside}/model"),
         (NOT_WRITTEN,)),
    Case("export-out-etc", "/etc as the output's parent", export_start(out="/etc/workbench"), (NOT_WRITTEN,)),
    Case("export-out-run-folder", "the output inside the workspace's runs", export_start(out="{workspace}/runs/copy"),
         (NOT_WRITTEN,)),
    Case("export-out-dotdot", "an output under exports that climbs out", export_start(out="{workspace}/exports/../../x"),
         (NOT_WRITTEN,)),
    Case("export-out-nul", "a NUL byte in the output folder", export_start(out="{workspace}/exports/a\x00b"),
         ("not a usable path",)),
    Case("export-out-next-to-root", "a folder whose name only starts like the --export-root",
         export_start(out="{shelf}-not/m"), (NOT_WRITTEN,)),
    Case("export-out-taken", "a non-empty folder in the --export-root", export_start(out="{shelf}/taken"),
         ("already exists and is not empty",)),
    Case("export-run-outside", "a run folder outside the workspace", export_start(run="{outside}"),
         ("not a run of this workspace",)),
    Case("export-run-missing-outside", "a run folder outside that does not exist (the same answer)",
         export_start(run="{outside}/nothing-here"), ("not a run of this workspace",)),
    Case("export-run-empty", "no run", export_start(run=""), ("no run given",)),
    Case("export-run-not-a-run", "the runs folder itself", export_start(run="{workspace}/runs"), ("run",)),
    Case("export-shard-zero", "shard size 0GB", export_start(shard_size="0GB"), ("Shard size", "out of bounds")),
    Case("export-shard-huge", "shard size 99999999999GB", export_start(shard_size="99999999999GB"),
         ("Shard size", "out of bounds")),
    Case("export-shard-text", "shard size 'big'", export_start(shard_size="big"), ("Shard size", "not a size")),
    Case("export-system-huge", "a 1 MB system prompt for the Modelfile", export_start(system="x" * 2**20, ollama=True),
         ("Modelfile", "at most 32000")),
    Case("export-dtype", "dtype int4", export_start(dtype="int4"), ("refused by Gradio", "not in the list of choices")),
    Case("export-gguf", "GGUF type q4_k", export_start(gguf=["q4_k"]), ("refused by Gradio", "not in the list of choices")),
    # The server's own routes, logged in: its file route serves nothing from outside.
    Case("file-route-secret", "Gradio's file route on a file outside", http("GET", "/gradio_api/file={secret}"), ("403",)),
    Case("file-route-passwd", "Gradio's file route on /etc/passwd", http("GET", "/gradio_api/file=/etc/passwd"), ("403",)),
    Case("file-route-login-file", "Gradio's file route on the login file", http("GET", "/gradio_api/file={users}"),
         ("403",)),
    Case("file-route-source", "Gradio's file route on the app's own source", http("GET", "/gradio_api/file=core/cli.py"),
         ("403",)),
    Case("login-huge-password", "a 1 MB password", http("POST", "/login", login=False,
                                                       data={"username": USER, "password": "x" * 2**20}), ("400",)),
    Case("login-empty", "an empty user name and password", http("POST", "/login", login=False,
                                                               data={"username": "", "password": ""}), ("422",)),
]


_TRAIN: dict = {}


def train_positions(s) -> dict[str, int]:
    """Where each Train form field sits among /train_start's values, read from the served page's own config."""
    if "positions" not in _TRAIN:
        with httpx.Client(base_url=s["url"], timeout=60) as session:
            session.post("/login", data={"username": USER, "password": PASSWORD})
            config = session.get("/config").json()
        kinds = {c["id"]: c for c in config["components"]}
        start = next(d for d in config["dependencies"] if d.get("api_name") == "train_start")
        ids = [kinds[i]["props"].get("elem_id") for i in start["inputs"] if kinds[i]["type"] != "state"]
        _TRAIN["positions"] = {dotted: ids.index(field_id(dotted)) for dotted in
                               ("model.path", "model.trust_remote_code", "data.dataset", "data.registry", "data.max_length")}
    return _TRAIN["positions"]


def train_defaults(c, s) -> list:
    if "defaults" not in _TRAIN:
        info = c.view_api(return_format="dict", print_info=False)["named_endpoints"]["/train_start"]["parameters"]
        _TRAIN["defaults"] = [p.get("parameter_default") for p in info]
    return list(_TRAIN["defaults"])


def tracebacks_through_our_code(log: str) -> list[str]:
    """Frames of this project's code in the server log: Gradio logs its own refusals (a value not among a
    picker's choices) with a trace of its own code, which is Gradio's business; a frame of ours means a handler
    raised instead of answering."""
    return [line for line in log.splitlines() if re.search(rf'File "{re.escape(str(PROJECT_ROOT))}/(core|webui)/', line)]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_a_bad_request_is_refused_naming_its_place(served, client, case):
    logged = len(served["log"].read_text(errors="replace"))
    said = case.send(client, served)
    missing = [e for e in case.expect if not any(alternative in said for alternative in e.split("|"))]
    assert not missing, f"{case.name} ({case.what}): expected {missing} in:\n{said[:3000]}"
    assert CANARY not in said and "Traceback" not in said, said[:3000]
    assert not (served["outside"] / "model").exists() and not (served["outside"] / "x").exists()
    assert not list((served["workspace"] / "runs").glob("2*")), "a bad request started a run"
    assert not tracebacks_through_our_code(served["log"].read_text(errors="replace")[logged:])


def test_the_table_is_long_enough_and_names_no_input_twice():
    assert len(CASES) >= 50 and len({c.name for c in CASES}) == len(CASES)
