"""The real server, off loopback, attacked over HTTP: every page and API call needs a login, and a logged-in
caller still cannot read a file outside the allowed folders through the Data tab (open, registry, forged
upload, registry entry pointing out), load a folder the Chat tab does not offer, or export outside the exports
folder; no refusal carries the file's content."""
from __future__ import annotations

import json
import os
import re
import time

import httpx
import pytest
from gradio_client import Client

from tests.safety.conftest import CANARY, DATA_REST, PASSWORD, USER


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


def test_a_data_root_given_at_start_is_read_and_its_neighbours_are_not(served, client):
    preview, _ = client.predict(str(served["extra"] / "listed.jsonl"), "", *DATA_REST, api_name="/data_open")
    assert "from the data root" in re.sub("<[^>]+>", "", preview) and "1 samples" in report(client)
    client.predict(str(served["extra"].parent / "extra-not" / "listed.jsonl"), "", *DATA_REST, api_name="/data_open")
    assert "outside the folders this server reads from" in report(client)


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


def test_an_export_root_given_at_start_is_allowed(served, client):
    # A folder there that is taken: the export passes the access rule and is stopped only by the next check,
    # so nothing is started or written.
    taken = served["shelf"] / "taken"
    client.predict(str(served["run"]), str(taken), "2GB", "float32", [], False, "", api_name="/export_start")
    said = client.predict("en", api_name="/message_export_message")
    assert "already exists and is not empty" in said and "outside the folders" not in said, said
    assert [p.name for p in taken.iterdir()] == ["weights.bin"]


def test_uploads_are_bounded_in_size_gradios_copies_expire_and_no_call_is_kept(served):
    from core.safety.access import MAX_UPLOAD_BYTES, UPLOAD_CACHE_CLEANUP
    from webui.app import build_app

    with httpx.Client(base_url=served["url"], timeout=30) as http:
        http.post("/login", data={"username": USER, "password": PASSWORD})
        config = http.get("/config").json()
        assert config["max_file_size"] == MAX_UPLOAD_BYTES
        assert config["run_history"] is False and http.get("/gradio_api/runs").status_code == 404
    assert build_app(served["workspace"]).delete_cache == UPLOAD_CACHE_CLEANUP
