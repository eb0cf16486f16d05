"""A run's job.yaml is a record of what the run used, and opening a run only parses it: a finished run still
loads for chat and export (core.models.adapter) when its dataset file was deleted, when it trained on a hub
dataset and the hub is out of reach, when its job asks for a GPU this machine lacks, and when its job.yaml
was written in the old form that held every method's sections."""
from __future__ import annotations

import shutil

import pytest
import torch
import yaml
from transformers import AutoModelForCausalLM

from core.models.adapter import check_run, load_run_model
from core.paths import DATA_DIR
from core.runs import runner
from core.runs.folder import RunFolder
from core.spec import SpecError, check_launch, load_spec
from tests.helpers import kill_leftover_trainers, tiny_spec, wait_for_end


@pytest.fixture(scope="module")
def finished(tiny_model_dir, tmp_path_factory):
    """A LoRA run trained on a local copy of the identity data, whose copy is then deleted."""
    workspace = tmp_path_factory.mktemp("ws")
    data = workspace.parent / "identity-copy.json"
    shutil.copyfile(DATA_DIR / "identity.json", data)
    spec = tiny_spec(tiny_model_dir, data={"dataset": str(data)})
    check_launch(spec)
    run = runner.start(spec, workspace)
    status = wait_for_end(run)
    assert status["state"] == "completed", run.log_tail(3000)
    data.unlink()
    yield run
    kill_leftover_trainers(workspace)


def prompt_logits(model, tokenizer):
    ids = tokenizer("Who are you?", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        return model(input_ids=ids).logits


def test_the_job_yaml_of_a_lora_run_holds_only_what_it_used(finished):
    written = yaml.safe_load(finished.job.read_text())
    assert list(written) == ["method", "model", "data", "lora", "train", "runtime"]
    assert not {"vera", "adalora", "quant", "longlora"} & set(written)


def test_a_run_whose_dataset_was_deleted_still_loads(finished, tiny_model_dir):
    with pytest.raises(SpecError) as caught:  # it could not start again: the data is gone
        check_launch(load_spec(str(finished.job)))
    assert "data.dataset" in dict(caught.value.problems)
    model, tokenizer, spec = load_run_model(check_run(finished.path))
    assert spec.data.dataset.endswith("identity-copy.json")
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    assert not torch.allclose(prompt_logits(model, tokenizer), prompt_logits(base, tokenizer), atol=1e-4), \
        "the adapter changes nothing, so loading it proves nothing"


def hub_dataset(job: dict) -> dict:
    job["data"]["dataset"] = "someone/some-dataset"  # trained where a network was; the hub is offline here
    return job


def cuda_device(job: dict) -> dict:
    job["runtime"]["device"] = "cuda"
    return job


def every_section(job: dict) -> dict:
    """The form the workbench wrote before job.yaml held only the run's sections."""
    from core.spec import spec_from_dict

    for name, section in spec_from_dict({}).sections.items():
        job.setdefault(name, dict(vars(section)))
    job["vera"]["a_field_since_renamed"] = 1
    return job


RECORDS = {"hub dataset": (hub_dataset, "data.dataset"), "cuda device": (cuda_device, "runtime.device"),
           "old job.yaml with every section": (every_section, None)}


@pytest.mark.parametrize("rewrite, launch_field", RECORDS.values(), ids=RECORDS.keys())
def test_a_finished_run_loads_whatever_its_job_asks_of_the_world(finished, tmp_path, monkeypatch, rewrite,
                                                                  launch_field):
    """A run folder made to look finished (job.yaml, completed status, the trained adapter) with a job this
    machine could not start; chat and export open it all the same, with the same adapter."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    if launch_field == "runtime.device" and torch.cuda.is_available():
        pytest.skip("needs a machine without a CUDA GPU")
    run = RunFolder(tmp_path / "runs" / "copied")
    run.path.mkdir(parents=True)
    run.job.write_text(yaml.safe_dump(rewrite(yaml.safe_load(finished.job.read_text())), sort_keys=False))
    shutil.copytree(finished.adapter_dir, run.adapter_dir)
    run.write_status(state="completed", step=4, total_steps=4)

    spec = load_spec(str(run.job))
    if launch_field:
        with pytest.raises(SpecError) as caught:
            check_launch(spec)
        assert launch_field in dict(caught.value.problems)
    else:
        assert spec.notes and all("method lora does not read it" in note for note in spec.notes)

    model, tokenizer, _ = load_run_model(check_run(run.path))
    reference, _, _ = load_run_model(check_run(finished.path))
    assert torch.equal(prompt_logits(model, tokenizer), prompt_logits(reference, tokenizer))
