"""`app.py bench` on the tiny model: the table lines people and scripts read are still there, and the run
records its pre-launch estimate and the measured figures in status.json (what the Train tab shows at the end)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

from core.paths import PROJECT_ROOT
from tests.helpers import tiny_job


def test_bench_table_and_the_runs_estimate_check(tiny_model_dir, workspace, tmp_path):
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump(tiny_job(tiny_model_dir, train={"logging_steps": 1})))
    out = subprocess.run([sys.executable, "app.py", "bench", str(job), "--workspace", str(workspace)],
                         cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.splitlines()
    assert any(line.strip().startswith("samples/s") for line in lines)
    assert any("peak memory (peak RSS of the trainer)" in line and "MiB" in line for line in lines)
    assert any("peak memory predicted before launch" in line for line in lines)
    run = Path(lines[-1])
    status = json.loads((run / "status.json").read_text())
    predicted, measured = status["estimate"]["predicted"], status["estimate"]["measured"]
    assert predicted["peak_mb"] > 0 and sum(predicted["parts_mb"].values()) == pytest_approx(predicted["peak_mb"])
    assert measured["peak_mb"] > 0 and measured["step_s"] > 0
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["tokens_seen"] > records[0]["tokens_seen"] > 0


def pytest_approx(value):
    import pytest

    return pytest.approx(value, abs=1.0)  # parts are rounded to 0.1 MiB each
