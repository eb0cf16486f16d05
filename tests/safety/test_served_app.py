"""The real server, off loopback, attacked over HTTP: every page and API call needs a login, and a logged-in
caller still cannot read a file outside the allowed folders through the Data tab (open, registry, forged
upload, registry entry pointing out), load a folder the Chat tab does not offer, or export outside the exports
folder; no refusal carries the file's content."""
from __future__ import annotations

import json
import os
import time

import httpx
import pytest
from gradio_client import Client

from core.safety.login import AUTH_FILE_ENV, login_line
from core.spec import dump_spec
from tests.helpers import start_server, tiny_spec

USER, PASSWORD = "alice", "correct horse battery"
CANARY = "CANARY-51d2"
# Data tab inputs after the dataset name and registry: format, columns, language, model, max length, ...
DATA_REST = ("auto", "", "en", "SmolLM2-135M-Instruct", 512, False, "Ferret", "LoRA Workbench")


@pytest.fixture(scope="module")
def served(tmp_path_factory, tiny_model_dir):
    """`serve --host 0.0.0.0` with the login file named by the environment variable; a workspace holding one
    dataset and one finished run; an outside folder holding secrets."""
    root = tmp_path_factory.mktemp("served")
    workspace, outside = root / "ws", root / "outside"
    (workspace / "data").mkdir(parents=True)
    outside.mkdir()
    secret = outside / "secret.jsonl"
    secret.write_text(json.dumps({"instruction": CANARY, "output": CANARY}) + "\n")
    (outside / "notes.txt").write_text(f"{CANARY} a private note\n")
    (outside / "dataset_info.json").write_text(json.dumps({CANARY: {"file_name": "secret.jsonl"}}))
    (workspace / "data" / "mine.jsonl").write_text(json.dumps({"instruction": "hi", "output": "hello"}) + "\n")
    (workspace / "data" / "escape.json").write_text(json.dumps({"escape": {"file_name": str(secret)}}))
    os.symlink(secret, workspace / "data" / "link.jsonl")
    run = workspace / "runs" / "r1"
    (run / "adapter").mkdir(parents=True)
    (run / "job.yaml").write_text(dump_spec(tiny_spec(tiny_model_dir)))
    (run / "status.json").write_text(json.dumps({"state": "completed"}))
    (run / "adapter" / "adapter_config.json").write_text("{}")
    users = root / "users"
    users.write_text(login_line(USER, PASSWORD) + "\n")
    proc, url = start_server(workspace, root / "server.log", "--host", "0.0.0.0", env={AUTH_FILE_ENV: str(users)})
    yield {"url": url, "workspace": workspace, "outside": outside, "secret": secret, "run": run}
    proc.terminate()
    proc.wait(timeout=30)


@pytest.fixture(scope="module")
def client(served):
    return Client(served["url"] + "/", auth=(USER, PASSWORD), verbose=False)


def test_every_page_and_api_call_needs_a_login(served):
    url = served["url"]
    with httpx.Client(base_url=url, timeout=30) as http:
        for path in ("/config", "/gradio_api/info", "/gradio_api/openapi.json", "/gradio_api/queue/status",
                     f"/gradio_api/file={served['secret']}", "/gradio_api/file=README.md", "/monitoring"):
            assert http.get(path).status_code == 401, path
        assert http.post("/gradio_api/call/data_open", json={"data": [str(served["secret"]), *("",) * 9]}).status_code == 401
        assert http.post("/gradio_api/queue/join", json={"data": [], "fn_index": 0, "session_hash": "x"}).status_code == 401
        assert http.post("/gradio_api/upload", files={"files": ("x.jsonl", b"{}\n")}).status_code == 401
        assert "auth_required" in http.get("/").text or http.get("/config").status_code == 401
        started = time.monotonic()
        assert http.post("/login", data={"username": USER, "password": "guess"}).status_code == 400
        assert http.post("/login", data={"username": "root", "password": PASSWORD}).status_code == 400
        assert time.monotonic() - started >= 2.0  # each wrong guess waits
        assert http.post("/login", data={"username": USER, "password": PASSWORD}).status_code == 200
        assert http.get("/config").status_code == 200  # the cookie it set lets this caller in
    with pytest.raises(Exception, match="(?i)login|credentials|auth"):
        Client(url + "/", verbose=False)
    with pytest.raises(Exception, match="(?i)login|credentials|auth"):
        Client(url + "/", auth=(USER, "wrong"), verbose=False)


def report(client) -> str:
    """What the Data tab's report box says now, as the page would show it."""
    return client.predict("en", api_name="/message_data_report")


def test_the_data_tab_reads_only_inside_the_allowed_folders(served, client):
    outside, secret = served["outside"], served["secret"]
    attempts = [(str(secret), ""), (str(outside / "notes.txt"), ""),
                (str(served["workspace"] / "data" / ".." / ".." / "outside" / "secret.jsonl"), ""),
                (str(served["workspace"] / "data" / "link.jsonl"), ""),  # a symlink inside, pointing out
                ("anything", str(outside / "dataset_info.json")),  # a registry outside (its entry is the canary)
                ("escape", str(served["workspace"] / "data" / "escape.json"))]  # an entry pointing out
    for name, registry in attempts:
        preview, histogram = client.predict(name, registry, *DATA_REST, api_name="/data_open")
        said = report(client)
        assert "outside the folders this server reads from" in said, (name, said)
        assert CANARY not in said + preview + json.dumps(histogram) and "class='sample" not in preview
    listed = client.predict(str(outside / "dataset_info.json"), "en", api_name="/data_registry")
    assert CANARY not in json.dumps(listed)
    # Inside the workspace (and the bundled data) the same endpoint previews the file.
    preview, histogram = client.predict(str(served["workspace"] / "data" / "mine.jsonl"), "", *DATA_REST,
                                        api_name="/data_open")
    assert "hello" in preview and histogram is not None and "1 samples" in report(client)


def test_a_forged_upload_path_is_refused(served):
    with httpx.Client(base_url=served["url"], timeout=60) as http:
        http.post("/login", data={"username": USER, "password": PASSWORD})
        event = http.post("/gradio_api/call/data_upload", json={"data": [
            {"path": str(served["secret"]), "meta": {"_type": "gradio.FileData"}}]}).json()["event_id"]
        answer = http.get(f"/gradio_api/call/data_upload/{event}").text
    assert "event: error" in answer and CANARY not in answer
    assert sorted(p.name for p in (served["workspace"] / "data").iterdir()) == ["escape.json", "link.jsonl", "mine.jsonl"]


def test_chat_loads_only_what_it_offers(served, client):
    from gradio_client.exceptions import AppError

    for forged in (f"run:{served['outside']}", f"base:{served['outside']}", "base:/etc"):
        try:
            client.predict(forged, api_name="/chat_load")
            said = client.predict("en", api_name="/message_chat_status")
        except AppError as err:  # Gradio's own check of the picker's choices may answer first
            said = str(err)
        assert "not a finished run of this workspace" in said or "not in the list of choices" in said, said


def test_exports_go_only_under_the_exports_folder(served, client):
    workspace, outside = served["workspace"], served["outside"]
    # Export inputs: run, out, shard size, dtype, gguf, ollama, system prompt.
    for out in (str(outside / "model"), "/etc/workbench-export", str(workspace / "runs" / "copy")):
        client.predict(str(served["run"]), out, "2GB", "float32", [], False, "", api_name="/export_start")
        said = client.predict("en", api_name="/message_export_message")
        assert "outside the folders this server writes exports to" in said, said
    assert not (outside / "model").exists() and not os.path.exists("/etc/workbench-export")
    assert not (workspace / "exports").exists() or not any(p.name.endswith("-r1-") for p in (workspace / "exports").iterdir())
    client.predict(str(outside), "", "2GB", "float32", [], False, "", api_name="/export_start")
    assert "is not a run of this workspace" in client.predict("en", api_name="/message_export_message")
