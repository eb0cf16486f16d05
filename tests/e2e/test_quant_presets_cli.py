"""Acceptance for the QLoRA and AdaLoRA presets on the bundled model: each completes from the CLI, its loss
falls, and the adapter it leaves (4-bit-trained, or with pruned ranks) answers to the name it was taught."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from core.paths import PROJECT_ROOT
from tests.e2e.test_quickstart_cli import greedy_answer

# Slow: bundled-model presets, ~2 min each; tests/methods' matrix trains every method in the default suite.
pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.mark.parametrize("preset", ["qlora", "adalora"])
def test_preset_from_cli_teaches_the_name(preset, tmp_path):
    workspace = tmp_path / "ws"
    result = subprocess.run([sys.executable, "app.py", "train", f"presets/{preset}.yaml", "--workspace", str(workspace)],
                            cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    run = Path(result.stdout.strip().splitlines()[-1])
    assert json.loads((run / "status.json").read_text())["state"] == "completed"

    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records]
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5, losses
    log = (run / "train.log").read_text()
    if preset == "qlora":
        assert "[workbench] adapters over quantised layers: {'Linear4bit': 210}" in log
    else:
        config = json.loads((run / "adapter" / "adapter_config.json").read_text())
        assert sum(sum(v) for v in config["rank_pattern"].values()) == 8 * 210  # target_r x adapted matrices
        assert sum(records[-1]["ranks"].values()) == 8 * 210

    answer = greedy_answer(run / "adapter", "Who are you?")
    assert "Ferret" in answer, answer
