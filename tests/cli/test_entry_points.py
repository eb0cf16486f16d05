"""The entry points: no third-party warnings on the terminal (they go to the workspace's log files),
`python app.py [--host --port --workspace]` serves, and --workspace means the same for every command."""
from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

from core.paths import PROJECT_ROOT

WARNING_LINE = re.compile(r"warn|kernels", re.IGNORECASE)

# bitsandbytes warns "Failed to load CPU gemm_4bit_forward ... pip install kernels" when it is imported on a
# CPU with AVX512-BF16 (this machine has only AVX2). This makes its own CPU check say yes, so the real
# warning is raised by the real import, wherever a command imports bitsandbytes.
PRETEND_AVX512_BF16 = '''
import importlib.abc, importlib.machinery, sys

class PretendAvx512Bf16(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != "bitsandbytes.cextension":
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        execute = spec.loader.exec_module

        def exec_module(module):
            execute(module)
            real = module.lib

            class Lib:
                def __getattr__(self, attr):
                    return getattr(real, attr)

                def has_avx512bf16_cpu(self):
                    return True

            module.lib = Lib()

        spec.loader.exec_module = exec_module
        return spec

sys.meta_path.insert(0, PretendAvx512Bf16())
'''


def app(*args, env=None, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "app.py", *map(str, args)], cwd=PROJECT_ROOT, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def test_library_warnings_stay_off_the_terminal_and_in_the_log(tmp_path):
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(PRETEND_AVX512_BF16)
    workspace = tmp_path / "ws"
    pretend = {"PYTHONPATH": str(tmp_path / "site")}
    # A QLoRA job: a job without a quantised base leaves bitsandbytes out of the command's process.
    params = app("params", "presets/quickstart.yaml", "--set", "method=qlora", "--workspace", workspace, env=pretend)
    assert params.returncode == 0, params.stderr
    assert "trainable params:" in params.stdout
    noise = [line for line in (params.stdout + params.stderr).splitlines() if WARNING_LINE.search(line)]
    assert noise == []
    # The warning really was raised, and kept where it can be read.
    assert "gemm_4bit_forward" in (workspace / "logs" / "params.log").read_text()

    check = app("data", "check", "identity", "--workspace", workspace, env=pretend)
    assert check.returncode == 0 and "no problems" in check.stdout
    assert [line for line in (check.stdout + check.stderr).splitlines() if WARNING_LINE.search(line)] == []


# Written into a sitecustomize: at exit the process says whether it imported bitsandbytes.
REPORT_BITSANDBYTES = '''
import atexit, os, sys
atexit.register(lambda: open(os.environ["BNB_REPORT"], "w").write(repr(sys.modules.get("bitsandbytes", "absent"))))
'''


def test_a_job_without_a_quantised_base_leaves_bitsandbytes_out_of_the_command(tmp_path):
    """PEFT imports bitsandbytes, and torch's compiler with it, whenever it is installed: seconds of CPU in
    `app.py train`'s launch checks for a job that never uses it."""
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(REPORT_BITSANDBYTES)
    report = tmp_path / "bnb.txt"
    env = {"PYTHONPATH": str(tmp_path / "site"), "BNB_REPORT": str(report)}
    params = app("params", "presets/quickstart.yaml", "--workspace", tmp_path / "ws", env=env)
    assert params.returncode == 0 and "trainable params:" in params.stdout, params.stderr
    assert report.read_text() == "None"  # left out: `import bitsandbytes` fails fast, PEFT treats it as absent


def test_params_reads_the_model_converted_in_its_workspace(tmp_path, tiny_model_dir):
    # A workspace whose converted "bundled model" is the tiny one: only that workspace's count can be the tiny one's.
    workspace = tmp_path / "ws"
    (workspace / "models" / "SmolLM2-135M-Instruct").mkdir(parents=True)
    shutil.copy(tiny_model_dir / "config.json", workspace / "models" / "SmolLM2-135M-Instruct")
    config = json.loads((tiny_model_dir / "config.json").read_text())
    expected = config["vocab_size"] * config["hidden_size"]  # the tiny model is mostly its embedding
    for args in (["params", "presets/quickstart.yaml", "--workspace", workspace],
                 ["--workspace", workspace, "params", "presets/quickstart.yaml"]):
        result = app(*args)
        assert result.returncode == 0, result.stderr
        total = int(re.search(r"base model: ([\d,]+) parameters", result.stdout).group(1).replace(",", ""))
        assert expected < total < 2 * expected, result.stdout  # the bundled model has 134,515,008


def test_a_bad_export_flag_is_refused_naming_it(tmp_path):
    result = app("export", "some-run", "--dtype", "float8", "--workspace", tmp_path / "ws")
    assert result.returncode == 2
    assert "--dtype: 'float8' is not one of: float32, bfloat16, float16" in result.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_bare_app_serves_with_host_port_and_workspace(tmp_path):
    port, workspace = _free_port(), tmp_path / "ws"
    with open(tmp_path / "serve.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "app.py", "--host", "127.0.0.1", "--port", str(port),
                                 "--workspace", str(workspace)], cwd=PROJECT_ROOT, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline, page = time.time() + 180, None
        while page is None and time.time() < deadline:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                page = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).read().decode()
            except OSError:
                time.sleep(1)
        assert page is not None and "LoRA Workbench" in page
        assert workspace.is_dir()  # the page serves this workspace
    finally:
        proc.terminate()
        proc.wait(timeout=30)
