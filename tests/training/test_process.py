"""The trainer's process settings (core/training/process.py): which processes leave bitsandbytes out, and the
allocator's mmap threshold.
Leaving it out changes this process's imports, so only the refusals are tried here; the processes that do
leave it out are checked from outside (train.log's note; `app.py params` in tests/cli/test_entry_points.py)."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

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


# In a fresh interpreter (mallopt changes the whole process): after the trainer's settings, a 1.5 MiB tensor
# lies in the heap and a 3 MiB one outside it (a mapping of its own).
ALLOCATOR_PROBE = """
from core.spec import spec_from_dict
from core.training.process import prepare_process
notes = prepare_process(spec_from_dict({"method": "lora", "runtime": {"device": "cpu"}}))
import torch
def in_heap(address):
    with open("/proc/self/maps") as maps:
        for line in maps:
            if line.rstrip().endswith("[heap]"):
                start, end = (int(x, 16) for x in line.split()[0].split("-"))
                if start <= address < end:
                    return True
    return False
keep = [torch.ones(int(mib * 2**20) // 4) for mib in (1.5, 3)]
print(notes, [in_heap(t.data_ptr()) for t in keep])
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt is set on Linux only")
def test_trainer_allocator_takes_small_tensors_from_the_heap_and_maps_large_ones():
    out = subprocess.run([sys.executable, "-c", ALLOCATOR_PROBE], capture_output=True, text=True, timeout=120,
                         check=True).stdout
    assert "tensors up to 2 MiB from the heap, larger ones mapped" in out
    assert out.strip().endswith("[True, False]"), out
