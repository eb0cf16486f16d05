"""The runner: one trainer per workspace, even when Starts race, and Stop saves what was trained.

Checking for an active run and creating the new one happen under one lock, so many Starts at once
give one run and a refusal naming it for every other. (Two `app.py train` processes at once:
tests/cli/test_cli.py; Start pressed in two pages at once: tests/browser/test_train_tab.py.)"""
from __future__ import annotations

import threading

import pytest

from core.runs import runner
from core.runs.folder import RunFolder, active_run, runs_dir
from tests.helpers import tiny_spec, wait_for_end, wait_for_step

ATTEMPTS = 8


def start_at_once(spec, workspace) -> list:
    """Call runner.start from ATTEMPTS threads released together; each result is a RunFolder or a RunnerBusy."""
    barrier = threading.Barrier(ATTEMPTS)
    results = []

    def start():
        barrier.wait()  # all at once, as two browsers pressing Start together
        try:
            results.append(runner.start(spec, workspace))
        except runner.RunnerBusy as err:
            results.append(err)

    threads = [threading.Thread(target=start) for _ in range(ATTEMPTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return results


def test_starts_at_once_make_one_run_and_stop_saves_it(tiny_model_dir, workspace):
    spec = tiny_spec(tiny_model_dir, train={"max_steps": 200})
    results = start_at_once(spec, workspace)
    started = [r for r in results if isinstance(r, RunFolder)]
    refused = [str(r) for r in results if isinstance(r, runner.RunnerBusy)]
    assert len(started) == 1 and len(refused) == ATTEMPTS - 1, results
    (run,) = started
    assert [p.name for p in runs_dir(workspace).iterdir()] == [run.run_id]  # one folder, nothing half made
    assert all(f"run {run.run_id} is still" in message for message in refused), refused

    wait_for_step(run, 2)
    with pytest.raises(runner.RunnerBusy, match=f"run {run.run_id} is still running"):
        runner.start(spec, workspace)  # and while it trains, a later Start is refused the same way
    assert len(list(runs_dir(workspace).iterdir())) == 1

    runner.stop(run)
    status = wait_for_end(run, timeout_s=120)
    assert status["state"] == "stopped", run.log_tail()
    assert 2 <= status["step"] < 200
    assert (run.adapter_dir / "adapter_model.safetensors").is_file()
    assert run.read_metrics()[0][-1]["step"] == status["step"]  # metrics cover every step it made
    assert active_run(workspace) is None  # the workspace is free again


@pytest.mark.parametrize("strategy, module", [("single", "core.training.trainer"), ("ddp", "core.training.group")])
def test_the_supervisor_picks_the_trainer_without_importing_torch(tiny_model_dir, tmp_path, strategy, module):
    """The supervisor only waits on the trainer; importing torch and peft to read one field cost it seconds
    of CPU beside the trainer's own start."""
    import json
    import subprocess
    import sys

    from core.paths import PROJECT_ROOT
    from core.spec import dump_spec

    folder = tmp_path / "run"
    folder.mkdir()
    runtime = {"strategy": strategy, "processes": 1 if strategy == "single" else 2}
    (folder / "job.yaml").write_text(dump_spec(tiny_spec(tiny_model_dir, runtime=runtime)))
    probe = ("import json, sys\nfrom pathlib import Path\nfrom core.runs.folder import RunFolder\n"
             "from core.runs.supervisor import trainer_command\n"
             f"command = trainer_command(RunFolder(Path({str(folder)!r})))\n"
             "print(json.dumps([command[2], sorted(m for m in ('torch', 'peft', 'transformers') if m in sys.modules)]))")
    out = subprocess.run([sys.executable, "-c", probe], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == [module, []]
