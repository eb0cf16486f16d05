"""The preview colours exactly the labels the trainer uses; peer datasets, eval split and packing really train."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.data.preview import preview_page
from core.data.source import open_dataset
from core.paths import SHARED_DIR
from core.runs.folder import new_run_folder, write_atomic
from core.spec import dump_spec
from tests.helpers import tiny_spec

PEER = SHARED_DIR / "peer-data" / "llamafactory"
PEER_REGISTRY = PEER / "dataset_info.json"


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    from core.models.loading import load_tokenizer

    return load_tokenizer(str(tiny_model_dir))


def test_preview_labels_are_the_trainers_labels(tiny_model_dir, tokenizer, tmp_path):
    """Rows as SFTTrainer holds them after its own preparation, against the preview's coloured tokens."""
    from transformers import AutoModelForCausalLM
    from trl import SFTConfig, SFTTrainer

    from core.training.trainer import build_dataset

    path = tmp_path / "mixed.jsonl"
    rows = [{"instruction": "Who are you?", "output": "I am {{name}}."},
            {"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello! " * 30},
                               {"from": "human", "value": "Again"}, {"from": "gpt", "value": "Hi again."}]},
            {"instruction": "Count", "input": "to three", "output": "one two three", "system": "Be brief.",
             "history": [["a", "b"]]}]
    path.write_text("\n".join(json.dumps(r) for r in rows[:1] + rows[2:]) + "\n")
    chat = tmp_path / "chat.jsonl"
    chat.write_text(json.dumps(rows[1]) + "\n")
    max_length = 40  # cuts the long conversation, so the cut is compared too
    spec = tiny_spec(tiny_model_dir, data={"dataset": f"{path}, {chat}", "max_length": max_length, "max_samples": 0})
    built = build_dataset(spec, tokenizer)
    trainer = SFTTrainer(model=AutoModelForCausalLM.from_pretrained(tiny_model_dir), train_dataset=built,
                         processing_class=tokenizer,
                         args=SFTConfig(output_dir=str(tmp_path / "out"), max_length=max_length, report_to=[], use_cpu=True))
    prepared = trainer.train_dataset
    shown = []
    for name in (str(path), str(chat)):
        shown += preview_page(open_dataset(name), tokenizer, 0, 10, max_length, False, {"name": "Ferret", "author": "LoRA Workbench"})
    assert len(prepared) == len(shown) == 3
    for row, sample in zip(prepared, shown):
        kept = [(text, trained) for text, trained, cut in sample.tokens if not cut]
        assert [label != -100 for label in row["labels"]] == [trained for _, trained in kept]
        assert row["labels"] == sample.labels
    assert ("cut", {"tokens": shown[2].num_tokens, "dropped": shown[2].num_tokens - max_length}) in shown[2].warnings
    assert ("stop_not_trained", {}) in shown[2].warnings  # the cut drops the last answer's <|im_end|>


def run_in_process(spec, workspace):
    """The trainer's own code path (core.training.trainer.train) on a run folder, without a subprocess per dataset."""
    from core.training.trainer import train

    run = new_run_folder(workspace, spec.method)
    write_atomic(run.job, dump_spec(spec))
    assert train(run) == "completed"
    return run


def test_eval_split_records_eval_loss_and_packing_trains(tiny_model_dir, workspace):
    spec = tiny_spec(tiny_model_dir, data={"dataset": "general_instructions", "max_samples": 40, "eval_split": 0.25,
                                           "eval_steps": 2, "batching": "packed", "max_length": 128})
    run = run_in_process(spec, workspace)
    records = run.read_metrics()[0]
    assert any(r.get("eval_loss") is not None for r in records)
    assert (run.adapter_dir / "adapter_config.json").is_file()


@pytest.mark.skipif(not PEER_REGISTRY.is_file(), reason="../shared/peer-data is not present")
def test_peer_registry_lists_missing_files_and_refuses_ranking():
    from core.data.registry import list_entries
    from core.data.source import check_dataset

    entries = {e.name: reason for e, reason in list_entries(str(PEER_REGISTRY))}
    assert entries["alpaca_en_demo"] is None and "missing" in entries["kto_en_demo"]
    assert "preference pairs" in check_dataset("dpo_en_demo", str(PEER_REGISTRY)).fatal


PEER_USABLE = ["identity", "alpaca_en_demo", "alpaca_zh_demo", "glaive_toolcall_en_demo", "wiki_demo", "c4_demo",
               str(PEER / "v1_sft_demo.jsonl")]


@pytest.mark.skipif(not PEER_REGISTRY.is_file(), reason="../shared/peer-data is not present")
@pytest.mark.parametrize("name", PEER_USABLE, ids=lambda n: Path(n).stem)
def test_every_usable_peer_file_trains_a_few_steps(name, tiny_model_dir, workspace):
    spec = tiny_spec(tiny_model_dir, data={"dataset": name, "registry": str(PEER_REGISTRY), "max_samples": 8,
                                           "max_length": 64}, train={"max_steps": 2})
    run = run_in_process(spec, workspace)
    losses = [r["loss"] for r in run.read_metrics()[0] if r.get("loss") is not None]
    assert len(losses) == 2 and all(loss > 0 for loss in losses)
