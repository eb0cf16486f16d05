"""Where base models come from: the bundled GGUF converted once, local folders, hub ids offline."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.models.source import ModelSourceError, resolve_model
from core.spec import BUNDLED_MODEL


def test_bundled_model_is_a_plain_hugging_face_folder():
    folder = resolve_model(BUNDLED_MODEL, convert=True)
    names = {p.name for p in Path(folder).iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "chat_template.jinja"} <= names
    config = json.loads((Path(folder) / "config.json").read_text())
    # The GGUF origin must not leak into the saved config, or every load would re-read the GGUF.
    assert "quantization_config" not in config
    assert config["model_type"] == "llama" and config["num_hidden_layers"] == 30


def test_hub_id_offline_names_the_problem(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelSourceError, match="not in the local cache"):
        resolve_model("some-org/not-downloaded-model")


def test_local_paths_that_are_not_models(tmp_path):
    with pytest.raises(ModelSourceError, match="model folder not found"):
        resolve_model(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelSourceError, match="no config.json"):
        resolve_model(str(tmp_path / "empty"))
    (tmp_path / "weights.bin").write_bytes(b"x")
    with pytest.raises(ModelSourceError, match="is a file"):
        resolve_model(str(tmp_path / "weights.bin"))


def test_a_workspace_uses_its_own_conversion_else_the_default_ones(tmp_path, monkeypatch):
    from core.models.source import bundled_folder
    from core.paths import MODELS_ENV, PROJECT_ROOT, WORKSPACE_ENV

    monkeypatch.delenv(MODELS_ENV, raising=False)
    monkeypatch.setenv(WORKSPACE_ENV, str(tmp_path))
    shared = PROJECT_ROOT / "workspace" / "models" / "SmolLM2-135M-Instruct"
    if (shared / "config.json").is_file():  # converted by an earlier test or run: reused, not converted again
        assert bundled_folder() == shared
    own = tmp_path / "models" / "SmolLM2-135M-Instruct"
    own.mkdir(parents=True)
    (own / "config.json").write_text("{}")
    assert bundled_folder() == own.resolve()
