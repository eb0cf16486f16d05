"""The Evaluate and Sweep tabs under the served policy: they read only what the other tabs may read, a
task file of one's own (which lm-eval may run Python from) is a terminal's choice, and the CLI (no policy)
still takes any file its user names."""
from __future__ import annotations

import shutil

import pytest
import yaml

from core.eval.options import EvalError, EvalOptions, check_options
from core.paths import DATA_DIR
from core.runs import queue
from core.safety.access import AccessPolicy
from core.sweeps.grid import SweepError
from core.sweeps.start import start_from_file
from tests.helpers import tiny_job


@pytest.fixture
def outside_data(tmp_path):
    """A well-formed dataset file outside every folder the server reads."""
    path = tmp_path / "outside" / "mine.json"
    path.parent.mkdir()
    shutil.copy(DATA_DIR / "identity.json", path)
    return path


def test_evaluate_reads_only_the_workspace_runs_and_allowed_data(tiny_runs, outside_data, tmp_path):
    run = tiny_runs["lora"]
    policy = AccessPolicy.for_server(run.path.parent.parent)

    with pytest.raises(EvalError) as refused:
        check_options(EvalOptions(run=str(run.path), dataset=str(outside_data)), policy)
    assert refused.value.option == "dataset" and "outside the folders" in refused.value.message
    with pytest.raises(EvalError) as refused:
        check_options(EvalOptions(run=str(tmp_path), dataset="identity"), policy)
    assert refused.value.option == "run" and "not a run of this workspace" in refused.value.message
    task = tmp_path / "task.yaml"
    task.write_text("task: mine\ndataset_path: json\n")
    with pytest.raises(EvalError) as refused:
        check_options(EvalOptions(run=str(run.path), dataset="identity", benchmark=str(task)), policy)
    assert refused.value.option == "benchmark" and "terminal" in refused.value.message

    served = check_options(EvalOptions(run=str(run.path), dataset="identity", benchmark="arithmetic_2digit"), policy)
    assert served.run == str(run.path)
    # The CLI passes no policy: its user may evaluate on any file they name.
    assert check_options(EvalOptions(run=str(run.path), dataset=str(outside_data))).dataset == str(outside_data)


def test_a_served_sweep_reads_only_presets_and_allowed_files(tiny_model_dir, outside_data, workspace, tmp_path):
    workspace.mkdir(parents=True)
    policy = AccessPolicy.for_server(workspace)
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump(tiny_job(tiny_model_dir)))
    with pytest.raises(SweepError) as refused:
        start_from_file(workspace, str(job), ["lora.r=2,4"], [], policy=policy)
    assert refused.value.problems[0][0] == "job" and "outside the folders" in refused.value.problems[0][1]

    # A job inside the workspace whose data lies outside: refused at the launch checks, nothing queued.
    inside = workspace / "job.yaml"
    inside.write_text(yaml.safe_dump(tiny_job(tiny_model_dir, data={"dataset": str(outside_data)})))
    with pytest.raises(SweepError) as refused:
        start_from_file(workspace, str(inside), ["lora.r=2,4"], [], policy=policy)
    assert any(where.endswith("data.dataset") for where, _ in refused.value.problems), refused.value.problems
    # Its own code from the model folder needs the operator's leave, whatever the sweep's overrides say.
    with pytest.raises(SweepError) as refused:
        start_from_file(workspace, "presets/quickstart.yaml", ["lora.r=2,4"], [],
                        overrides=["model.trust_remote_code=true"], policy=policy)
    assert any(where.endswith("model.trust_remote_code") for where, _ in refused.value.problems), refused.value.problems
    assert queue.is_empty(workspace)
