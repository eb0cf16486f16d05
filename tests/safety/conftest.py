"""The served app the HTTP tests attack: one server for the package, off loopback with a login file."""
from __future__ import annotations

import json
import os

import pytest
from gradio.utils import get_upload_folder
from gradio_client import Client

from core.safety.login import AUTH_FILE_ENV, login_line
from core.spec import dump_spec
from tests.helpers import start_server, tiny_spec

USER, PASSWORD = "alice", "correct horse battery"
CANARY = "CANARY-51d2"  # in every secret file: no answer may carry it
# Data tab inputs after the dataset name and registry: format, columns, language, model, max length, ...
DATA_REST = ("auto", "", "en", "SmolLM2-135M-Instruct", 512, False, "Ferret", "LoRA Workbench")


@pytest.fixture(scope="package")
def served(tmp_path_factory, tiny_model_dir):
    """`serve --host 0.0.0.0 --data-root EXTRA --export-root SHELF` with the login file named by the environment
    variable; a workspace holding one dataset and one finished run; an outside folder holding secrets."""
    root = tmp_path_factory.mktemp("served")
    workspace, outside, extra, shelf = root / "ws", root / "outside", root / "extra", root / "shelf"
    for folder in (workspace / "data", outside, extra, shelf / "taken"):
        folder.mkdir(parents=True)
    secret = outside / "secret.jsonl"
    secret.write_text(json.dumps({"instruction": CANARY, "output": CANARY}) + "\n")
    (outside / "notes.txt").write_text(f"{CANARY} a private note\n")
    (outside / "dataset_info.json").write_text(json.dumps({CANARY: {"file_name": "secret.jsonl"}}))
    (workspace / "data" / "mine.jsonl").write_text(json.dumps({"instruction": "hi", "output": "hello"}) + "\n")
    (workspace / "data" / "escape.json").write_text(json.dumps({"escape": {"file_name": str(secret)}}))
    (extra / "listed.jsonl").write_text(json.dumps({"instruction": "listed", "output": "from the data root"}) + "\n")
    (shelf / "taken" / "weights.bin").write_bytes(b"x")
    os.symlink(secret, workspace / "data" / "link.jsonl")
    run = workspace / "runs" / "r1"
    (run / "adapter").mkdir(parents=True)
    (run / "job.yaml").write_text(dump_spec(tiny_spec(tiny_model_dir)))
    (run / "status.json").write_text(json.dumps({"state": "completed"}))
    (run / "adapter" / "adapter_config.json").write_text("{}")
    (run / "adapter" / "adapter_model.safetensors").write_bytes(b"w" * 100)  # without weights it is not usable
    users = root / "users"
    users.write_text(login_line(USER, PASSWORD) + "\n")
    proc, url = start_server(workspace, root / "server.log", "--host", "0.0.0.0", "--data-root", extra,
                             "--export-root", shelf, env={AUTH_FILE_ENV: str(users)})
    yield {"url": url, "workspace": workspace, "outside": outside, "secret": secret, "run": run, "extra": extra,
           "shelf": shelf, "users": users, "model": tiny_model_dir, "log": root / "server.log",
           "uploads": get_upload_folder()}
    proc.terminate()
    proc.wait(timeout=30)


@pytest.fixture(scope="package")
def client(served):
    return Client(served["url"] + "/", auth=(USER, PASSWORD), verbose=False)
