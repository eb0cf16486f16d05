"""The trainer's process settings: which processes leave bitsandbytes out (core/training/process.py).
Leaving it out changes this process's imports, so only the refusals are tried here; the processes that do
leave it out are checked from outside (train.log's note; `app.py params` in tests/cli/test_entry_points.py)."""
from __future__ import annotations

import json
import shutil
import sys

from core.training.process import _may_be_quantised, leave_out_bitsandbytes


def test_a_plain_local_model_may_leave_bitsandbytes_out(tiny_model_dir):
    assert _may_be_quantised(str(tiny_model_dir)) is False


def test_a_checkpoint_saved_quantised_or_a_model_not_here_keeps_it(tiny_model_dir, tmp_path):
    saved_quantised = tmp_path / "bnb-4bit"
    shutil.copytree(tiny_model_dir, saved_quantised)
    config = json.loads((saved_quantised / "config.json").read_text())
    config["quantization_config"] = {"quant_method": "bitsandbytes", "load_in_4bit": True}
    (saved_quantised / "config.json").write_text(json.dumps(config))
    before = sys.modules.get("bitsandbytes", "absent")
    assert leave_out_bitsandbytes(str(saved_quantised), "lora") is False
    assert leave_out_bitsandbytes(str(saved_quantised)) is False  # chatting with the bare checkpoint
    assert leave_out_bitsandbytes(str(tiny_model_dir), "qlora") is False
    assert leave_out_bitsandbytes("someone/not-cached-here", "lora") is False
    assert sys.modules.get("bitsandbytes", "absent") == before
