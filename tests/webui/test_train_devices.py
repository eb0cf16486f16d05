"""The Train tab's runtime section: the device picker lists what this machine has, the strategy explains its
trade-offs in both languages, the other nodes' commands are shown, and GPU charts stay hidden without GPUs."""
from __future__ import annotations

import subprocess
import sys

import gradio as gr
import yaml

from core.paths import PROJECT_ROOT
from core.runtime.hardware import Gpu, cpu_cores, gpus
from core.spec import spec_from_dict
from tests.helpers import tiny_job
from webui.charts import gpu_figure
from webui.train_tab import chart_titles, device_choices, gpu_update, machine_text, node_command_text

TWO_GPUS = [Gpu(0, "NVIDIA H100 80GB HBM3", 81559), Gpu(1, "NVIDIA H100 80GB HBM3", 81559)]


def test_device_picker_lists_this_machines_devices(tmp_path):
    from webui.app import build_app

    found = gpus()
    assert found == []  # this machine: no NVIDIA GPU (a GPU machine lists its own below)
    demo = build_app(tmp_path / "ws")
    (picker,) = [b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "field-runtime-device"]
    assert [value for _, value in picker.choices] == [value for _, value in device_choices(found)] == ["auto", "cpu"]
    (machine,) = [b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "train-machine"]
    assert f"{cpu_cores()} CPU cores" in machine.value and "no NVIDIA GPU" in machine.value


def test_device_picker_with_gpus_names_each_with_its_memory():
    choices = device_choices(TWO_GPUS)
    assert choices == [("auto", "auto"), ("cpu", "cpu"), ("cuda", "cuda"),
                       ("0: NVIDIA H100 80GB HBM3, 80 GB", "0"), ("1: NVIDIA H100 80GB HBM3, 80 GB", "1"),
                       ("0,1", "0,1")]
    for _, value in choices:  # every offered value is a device the job spec accepts
        spec_from_dict({"method": "lora", "runtime": {"device": value, "processes": 2 if "," in value else 1,
                                                      "strategy": "ddp" if "," in value else "single"}})
    assert machine_text(16, TWO_GPUS, "en") == ("This machine: 16 CPU cores; GPU 0: NVIDIA H100 80GB HBM3, 80 GB; "
                                                "GPU 1: NVIDIA H100 80GB HBM3, 80 GB.")
    assert "16 个 CPU 核心" in machine_text(16, TWO_GPUS, "zh")


def test_strategy_help_names_the_trade_offs_in_both_languages():
    import dataclasses

    from core.spec.schema import RuntimeSection
    from webui.form import field_text

    (strategy,) = [f for f in dataclasses.fields(RuntimeSection) if f.name == "strategy"]
    for lang, words in (("en", ("fastest", "offload", "slowest", "CPU")), ("zh", ("最快", "卸载", "最慢", "CPU"))):
        info = field_text("runtime.strategy", strategy, lang)["info"]
        for word in ("single", "ddp", "fsdp", "deepspeed2", "deepspeed3", *words):
            assert word in info, (lang, word, info)


def test_node_commands_in_the_tab_and_from_the_cli(tmp_path, tiny_model_dir):
    job = tiny_job(tiny_model_dir, runtime={"nodes": 3, "strategy": "ddp", "main_address": "10.0.0.5",
                                            "main_port": 29650})
    from core.runtime.nodes import node_commands

    text = node_command_text(node_commands(spec_from_dict(job)))
    assert text.startswith("# node 1\n") and "\n\n# node 2\n" in text
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(job))
    result = subprocess.run([sys.executable, "app.py", "train", str(path), "--print-node-command", "--workspace",
                             str(tmp_path / "ws")], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "ws" / "runs").exists()  # it trains nothing
    commands = [part for part in result.stdout.split("# on node ")[1:]]
    assert [c.split(" ", 1)[0] for c in commands] == ["1", "2"]
    for rank, command in enumerate(commands, start=1):
        body = command.split("<<'EOF'\n", 1)[1].split("EOF\n", 1)[0]
        other = spec_from_dict(yaml.safe_load(body))  # the job each node trains: only its rank differs
        assert other.runtime.node_rank == rank
        assert other.to_dict() == {**spec_from_dict(job).to_dict(),
                                   "runtime": {**spec_from_dict(job).to_dict()["runtime"], "node_rank": rank}}
        assert f"app.py train node{rank}-job.yaml" in command


def test_gpu_charts_hidden_on_cpu_and_one_line_per_gpu_with_gpus():
    cpu_records = [{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.9}]
    update = gpu_update(cpu_records, "en")
    assert update["visible"] is False and update["value"] is None
    gpu_records = [{"step": s, "loss": 1.0, "gpu_memory_mb": {"0": 1000.0 + s, "1": 900.0},
                    "gpu_utilization": {"0": 90, "1": 80}, "gpu_power_w": {"0": 300.0}} for s in (1, 2, 3)]
    update = gpu_update(gpu_records, "zh")
    assert update["visible"] is True
    figure = gpu_figure(gpu_records, chart_titles("en"))
    names = [(t.name, t.xaxis) for t in figure.data]
    assert names == [("GPU 0", "x"), ("GPU 1", "x"), ("GPU 0", "x2"), ("GPU 1", "x2"), ("GPU 0", "x3")]
    assert list(figure.data[0].y) == [1001.0, 1002.0, 1003.0]
    assert isinstance(gr.Plot(figure), gr.Plot)
