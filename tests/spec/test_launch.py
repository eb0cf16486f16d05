"""Parsing looks at nothing outside the spec; the launch checks (only at Start) look at the model, the data,
the device and the method's backend, and name every problem by its field, all at once."""
from __future__ import annotations

import json

import pytest
import torch

from core.spec import SpecError, check_launch, spec_from_dict
from tests.helpers import tiny_job

# Jobs whose every field is well-formed but which cannot start on this machine: (job sections, field).
# (The method launch checks have their own tests: tests/methods/test_method_longlora.py, test_method_qlora.py.)
WORLD_PROBLEMS = {
    "model folder missing": ({"model": {"path": "/nonexistent/model-folder"}}, "model.path"),
    "dataset file missing": ({"data": {"dataset": "/nonexistent/data.jsonl"}}, "data.dataset"),
    "hub dataset offline": ({"data": {"dataset": "someone/some-dataset"}}, "data.dataset"),
}


def launch_problems(spec) -> dict[str, str]:
    with pytest.raises(SpecError) as caught:
        check_launch(spec)
    return dict(caught.value.problems)


@pytest.mark.parametrize("sections, field", WORLD_PROBLEMS.values(), ids=WORLD_PROBLEMS.keys())
def test_world_problems_parse_and_are_refused_at_launch(tiny_model_dir, monkeypatch, sections, field):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    spec = spec_from_dict(tiny_job(tiny_model_dir, **sections))  # parsing never looks
    assert field in launch_problems(spec)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a CUDA GPU")
def test_cuda_on_a_machine_without_one_parses_and_is_refused_at_launch(tiny_model_dir):
    spec = spec_from_dict(tiny_job(tiny_model_dir, runtime={"device": "cuda"}))
    assert "no CUDA GPU" in launch_problems(spec)["runtime.device"]


def test_folder_without_config_is_refused_at_launch(tmp_path, tiny_model_dir):
    spec = spec_from_dict(tiny_job(tiny_model_dir, model={"path": str(tmp_path)}))
    assert "config.json" in launch_problems(spec)["model.path"]


def test_every_launch_problem_is_reported_together(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    bad_data = tmp_path / "d.jsonl"
    bad_data.write_text(json.dumps({"instruction": "hi", "output": "hello"}) + "\n{oops\n")
    spec = spec_from_dict(tiny_job(tiny_model_dir, method="qlora", model={"path": str(tmp_path / "gone")},
                                   data={"dataset": str(bad_data)}, quant={"paged_optimizer": True},
                                   runtime={"device": "cpu"}))
    problems = launch_problems(spec)
    assert set(problems) == {"model.path", "data.dataset", "quant.paged_optimizer"}
    assert "line 2: invalid JSON" in problems["data.dataset"]


def test_a_good_job_passes_the_launch_checks(tiny_model_dir):
    for method in ("lora", "longlora", "qlora"):
        check_launch(spec_from_dict(tiny_job(tiny_model_dir, method=method)))
