"""The launch check of a model folder reads headers only, refuses broken folders naming the file, and
accepts every sound layout: one safetensors file, shards with an index, a PyTorch .bin."""
from __future__ import annotations

import shutil
import time

from core.models.check import NO_TEMPLATE_NOTE, folder_problems, safetensors_problem


def test_the_tiny_model_is_sound(tiny_model_dir):
    assert folder_problems(tiny_model_dir) == ([], [])


def test_sharded_weights_with_an_index_are_accepted_and_a_missing_shard_is_named(tiny_model_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    folder = tmp_path / "sharded"
    shutil.copytree(tiny_model_dir, folder)
    (folder / "model.safetensors").unlink()
    AutoModelForCausalLM.from_pretrained(tiny_model_dir).save_pretrained(folder, max_shard_size="2MB")
    shards = sorted(folder.glob("model-*.safetensors"))
    assert len(shards) > 1 and (folder / "model.safetensors.index.json").is_file()
    assert folder_problems(folder) == ([], [])
    shards[-1].unlink()
    (problem,) = folder_problems(folder)[0]
    assert problem == f"{shards[-1]} is missing (model.safetensors.index.json lists it)"


def test_a_pytorch_bin_is_accepted_and_a_cut_one_refused(tiny_model_dir, tmp_path):
    import torch
    from safetensors.torch import load_file

    folder = tmp_path / "bin"
    shutil.copytree(tiny_model_dir, folder)
    torch.save(load_file(folder / "model.safetensors"), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    assert folder_problems(folder) == ([], [])
    data = (folder / "pytorch_model.bin").read_bytes()
    (folder / "pytorch_model.bin").write_bytes(data[: len(data) // 2])
    (problem,) = folder_problems(folder)[0]
    assert "pytorch_model.bin" in problem


def test_a_file_cut_by_one_byte_is_truncated(tiny_model_dir, tmp_path):
    path = tmp_path / "model.safetensors"
    path.write_bytes((tiny_model_dir / "model.safetensors").read_bytes()[:-1])
    assert "is truncated: its header promises" in safetensors_problem(path)


def test_a_missing_chat_template_is_a_note_not_a_problem(tiny_model_dir, tmp_path):
    import json

    folder = tmp_path / "plain"
    shutil.copytree(tiny_model_dir, folder)
    (folder / "chat_template.jinja").unlink(missing_ok=True)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    assert folder_problems(folder) == ([], [NO_TEMPLATE_NOTE])


def test_the_bundled_model_is_checked_in_well_under_a_second():
    from core.models.source import resolve_model

    folder = resolve_model("SmolLM2-135M-Instruct", convert=True)
    started = time.perf_counter()
    assert folder_problems(folder) == ([], [])
    assert time.perf_counter() - started < 1.0  # 538 MB of weights; only the 30 kB header is read
