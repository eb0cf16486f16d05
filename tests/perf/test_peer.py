"""The side-by-side benchmark's pieces that need no peer install: the shared data, the peer's job in its
own terms (and refusals), and the rate arithmetic both tools are measured with."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from core.paths import SHARED_DIR
from core.perf import peer
from core.perf.measure import step_rates
from tests.helpers import tiny_spec


def test_data_is_the_recipes(tmp_path):
    registry = peer.write_data(tmp_path / "ours")
    rows = json.loads((tmp_path / "ours" / "ident.json").read_text())
    assert len(rows) == 48 and json.loads(registry.read_text()) == {"ident": {"file_name": "ident.json"}}
    recipe = SHARED_DIR / "peer-bench" / "make_ident.py"
    if not recipe.exists():
        pytest.skip("the shared peer-bench recipe is not beside this checkout")
    subprocess.run([sys.executable, str(recipe), str(tmp_path / "recipe")], check=True)
    assert rows == json.loads((tmp_path / "recipe" / "ident.json").read_text())


def test_peer_config_mirrors_the_job(tiny_model_dir, tmp_path):
    spec = tiny_spec(tiny_model_dir, lora={"r": 16, "alpha": 32}, train={"max_steps": 30, "batch_size": 8})
    config = peer.peer_config(spec, tmp_path / "m", tmp_path / "d", tmp_path / "o", "fp32")
    assert (config["lora_rank"], config["lora_alpha"], config["lora_target"]) == (16, 32, "all")
    assert (config["per_device_train_batch_size"], config["max_steps"], config["cutoff_len"]) == (8, 30, 64)
    assert config["template"] == "smollm2" and "bf16" not in config
    assert peer.peer_config(spec, tmp_path, tmp_path, tmp_path, "bf16")["bf16"] is True
    with pytest.raises(peer.PeerError, match="method"):
        peer.peer_config(tiny_spec(tiny_model_dir, method="vera"), tmp_path, tmp_path, tmp_path, "fp32")
    with pytest.raises(peer.PeerError, match="all-linear"):
        peer.peer_config(tiny_spec(tiny_model_dir, lora={"targets": ["query"]}), tmp_path, tmp_path, tmp_path, "fp32")


def test_rates_cover_the_same_steps():
    points = [{"step": s, "t": 100.0 + 2.0 * s, "tokens": 400 * s} for s in range(1, 31)]
    rates = step_rates(points, samples_per_step=8)
    assert (rates["from_step"], rates["to_step"]) == (2, 30)
    assert rates["samples_per_s"] == pytest.approx(4.0)  # 29 steps x 8 samples in 58 s
    assert rates["tokens_per_s"] == pytest.approx(200.0)
    figures = peer.summarize("x", points, 8, launched=95.0, ended=170.0, tree_peak=3 * 2**30, kernel_peak=2 * 2**30,
                             load=1.0, where="-")
    assert figures["peak_rss_mb"] == 3 * 1024 and figures["launch_to_first_step_s"] == 7.0
    assert step_rates(points[:1], 8) is None


def test_our_side_and_the_grid_build_their_jobs(tiny_model_dir, tmp_path):
    """`app.py bench --against` and `--grid` rewrite the job before running it; both broke silently when the
    spec module they imported was renamed, so the rewriting itself is checked here (no peer install needed)."""
    from core.perf.compare import ours_job
    from core.perf.grid import grid_job

    spec = tiny_spec(tiny_model_dir, lora={"r": 16, "alpha": 32}, train={"max_steps": 30, "batch_size": 8})
    registry = peer.write_data(tmp_path / "shared")
    ours = ours_job(spec, registry)
    assert (ours.data.registry, ours.data.dataset, ours.data.eval_split) == (str(registry), peer.DATASET, 0.0)
    assert (ours.lora.r, ours.train.max_steps) == (16, 30)
    packed = grid_job(spec, 512, 32)
    assert (packed.data.max_length, packed.data.batching, packed.train.batch_size) == (512, "packed", 32)
