"""Acceptance for Evaluate on the bundled model: `app.py eval` on the quickstart run, on identity questions
worded unlike any it trained on (data/identity_heldout.json), shows the tuned model saying "Ferret" where the
base does not, with a higher exact match than the base and a lower loss."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from core.paths import PROJECT_ROOT

pytestmark = pytest.mark.e2e


def test_eval_shows_the_tuned_model_knows_its_name_on_held_out_questions(quickstart_run, tmp_path):
    workspace = tmp_path / "ws"
    run = workspace / "runs" / quickstart_run.run.name
    shutil.copytree(quickstart_run.run, run)  # the session's run is shared: eval writes into a copy
    result = subprocess.run([sys.executable, "app.py", "eval", run.name, "--dataset", "identity_heldout",
                             "--workspace", str(workspace)], cwd=PROJECT_ROOT, capture_output=True, text=True,
                            timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    saved = json.loads((run / "eval" / "identity_heldout.json").read_text(encoding="utf-8"))
    rows, base, tuned = saved["rows"], saved["models"]["base"], saved["models"]["tuned"]
    assert len(rows) == 12
    named = [r for r in rows if "ferret" in r["tuned"].lower() and "ferret" not in r["base"].lower()]
    assert len(named) >= 9, [(r["prompt"], r["base"], r["tuned"]) for r in rows]
    assert tuned["exact_match"] > base["exact_match"], (tuned, base)
    assert tuned["rouge_l"] > base["rouge_l"] and tuned["loss"] < base["loss"]
    assert saved["verdicts"]["better"] > saved["verdicts"]["worse"]
    print("\n".join(result.stdout.splitlines()[:12]))  # the score table, for the log
    assert "Ferret" in result.stdout and "better" in result.stdout
