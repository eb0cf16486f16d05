"""Code shipped in a model folder never runs unless the job sets model.trust_remote_code: such a folder is
refused before launch naming that field, `params` never shows transformers' "[y/N]" prompt, and a run whose
job allowed the code is loaded with it for chat and export (the web server asks its operator's leave first)."""
from __future__ import annotations

import json
import os
import pty
import shutil
import subprocess
import sys
import time

import pytest

from core.models.params import ParamCountError, count_parameters
from core.models.remote_code import FIELD, RemoteCodeRefused, custom_code_reason, refuse_custom_code
from core.paths import PROJECT_ROOT
from core.spec import SpecError, check_launch
from tests.helpers import tiny_job, tiny_spec

# The folder's own code: a Llama under another name, which leaves a mark wherever it runs.
CONFIG_CODE = '''
import os, pathlib
pathlib.Path(os.environ["CUSTOM_CODE_MARK"]).write_text("the model folder's code ran")
from transformers import LlamaConfig

class HomeMadeConfig(LlamaConfig):
    model_type = "home_made_llama"
'''
MODEL_CODE = '''
from transformers import LlamaForCausalLM
from .configuration_home_made import HomeMadeConfig

class HomeMadeForCausalLM(LlamaForCausalLM):
    config_class = HomeMadeConfig
'''


@pytest.fixture
def custom_model(tmp_path, tiny_model_dir, monkeypatch):
    """The tiny Llama's weights and tokenizer in a folder whose config needs its own code to load."""
    folder = tmp_path / "home-made"
    shutil.copytree(tiny_model_dir, folder)
    config = json.loads((folder / "config.json").read_text())
    config.update(model_type="home_made_llama", architectures=["HomeMadeForCausalLM"],
                  auto_map={"AutoConfig": "configuration_home_made.HomeMadeConfig",
                            "AutoModelForCausalLM": "modeling_home_made.HomeMadeForCausalLM"})
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "configuration_home_made.py").write_text(CONFIG_CODE)
    (folder / "modeling_home_made.py").write_text(MODEL_CODE)
    mark = tmp_path / "code-ran"
    monkeypatch.setenv("CUSTOM_CODE_MARK", str(mark))
    monkeypatch.setenv("HF_MODULES_CACHE", str(tmp_path / "modules"))  # transformers copies the code there
    return folder, mark


def test_a_folder_needing_its_own_code_is_told_apart(custom_model, tiny_model_dir, tmp_path):
    folder, mark = custom_model
    assert "home_made_llama" in custom_code_reason(str(folder))
    assert custom_code_reason(str(tiny_model_dir)) is None
    # An auto_map beside a type transformers knows loads with transformers' own code: not refused.
    known = tmp_path / "known"
    shutil.copytree(folder, known)
    config = json.loads((known / "config.json").read_text())
    (known / "config.json").write_text(json.dumps({**config, "model_type": "llama"}))
    assert custom_code_reason(str(known)) is None
    # A tokenizer of its own, for a type transformers does not know.
    tok = tmp_path / "tok"
    shutil.copytree(tiny_model_dir, tok)
    tok_config = json.loads((tok / "tokenizer_config.json").read_text())
    tok_config.update(tokenizer_class="HomeMadeTokenizer", auto_map={"AutoTokenizer": ["tokenization_x.HomeMadeTokenizer", None]})
    (tok / "tokenizer_config.json").write_text(json.dumps(tok_config))
    (tok / "config.json").write_text(json.dumps({**json.loads((tok / "config.json").read_text()), "model_type": "odd"}))
    assert "tokenizer" in custom_code_reason(str(tok))
    with pytest.raises(RemoteCodeRefused, match=FIELD):
        refuse_custom_code(str(folder), False)
    refuse_custom_code(str(folder), True)
    assert not mark.exists()


def test_refused_before_launch_naming_the_field(custom_model):
    from core.safety.access import AccessPolicy

    folder, mark = custom_model
    with pytest.raises(SpecError) as err:
        check_launch(tiny_spec(folder))
    (key, message), = err.value.problems
    assert key == "model.path" and "model.trust_remote_code: true" in message
    with pytest.raises(ParamCountError, match=FIELD):
        count_parameters(tiny_spec(folder))
    # Allowed by the job, but the web server's operator did not allow it.
    with pytest.raises(SpecError) as err:
        check_launch(tiny_spec(folder, model={"trust_remote_code": True}), AccessPolicy.for_server(folder.parent))
    assert [k for k, _ in err.value.problems] == ["model.trust_remote_code"] and "--allow-remote-code" in str(err.value)
    assert not mark.exists()


def test_params_never_prompts_even_on_a_terminal(custom_model, tmp_path):
    folder, mark = custom_model
    job = tmp_path / "job.yaml"
    job.write_text(json.dumps(tiny_job(folder)))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    # A pseudo-terminal on stdin: transformers would ask "[y/N]" there and wait for an answer.
    primary, secondary = pty.openpty()
    started = time.time()
    done = subprocess.run([sys.executable, "app.py", "params", str(job), "--workspace", str(tmp_path / "ws")],
                          cwd=PROJECT_ROOT, stdin=secondary, capture_output=True, text=True, timeout=120, env=env)
    os.close(secondary)
    os.close(primary)
    output = done.stdout + done.stderr
    assert done.returncode != 0 and FIELD in output and "[y/N]" not in output, output
    assert time.time() - started < 60 and not mark.exists()
    # Allowed by the job, the folder's code runs and the count is the tiny Llama's.
    allowed = subprocess.run([sys.executable, "app.py", "params", str(job), "--set", "model.trust_remote_code=true",
                              "--workspace", str(tmp_path / "ws")], cwd=PROJECT_ROOT, stdin=subprocess.DEVNULL,
                             capture_output=True, text=True, timeout=120, env=env)
    assert allowed.returncode == 0, allowed.stderr
    assert "trainable params" in allowed.stdout and mark.exists()


def test_a_run_that_allowed_the_code_keeps_it_for_chat_and_export(custom_model, tmp_path):
    from core.chat.targets import TargetRefused, offered_target
    from core.export.options import ExportError, ExportOptions, check_options
    from core.models.adapter import load_run_model
    from core.safety.access import AccessPolicy
    from tests.helpers import tiny_spec, train_spec

    folder, mark = custom_model
    workspace = tmp_path / "ws"
    run = train_spec(workspace, tiny_spec(folder, model={"trust_remote_code": True}, train={"max_steps": 2}))
    mark.unlink()
    model, tokenizer, spec = load_run_model(run)  # the job's own choice, as when it trained
    assert spec.model.trust_remote_code and type(model.get_base_model()).__name__ == "HomeMadeForCausalLM"
    assert mark.exists()
    # The web server loads it only where its operator allowed code from model folders.
    strict, lenient = AccessPolicy.for_server(workspace), AccessPolicy.for_server(workspace, remote_code=True)
    with pytest.raises(TargetRefused, match="--allow-remote-code"):
        offered_target(f"run:{run.path}", workspace, strict)
    assert offered_target(f"run:{run.path}", workspace, lenient).where == str(run.path)
    options = ExportOptions(run=str(run.path), out=str(workspace / "exports" / "m"))
    with pytest.raises(ExportError, match="--allow-remote-code"):
        check_options(options, strict)
    assert check_options(options, lenient).out == str(workspace / "exports" / "m")


def test_every_load_names_trust_remote_code():
    """transformers decides by itself (and may ask "[y/N]") when a load leaves trust_remote_code out, so every
    config, tokenizer and model load in core/ and webui/ passes it. A PEFT adapter holds no code and takes none."""
    import ast

    unnamed, seen = [], 0
    for folder in ("core", "webui"):
        for path in sorted((PROJECT_ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                        and node.func.attr == "from_pretrained"):
                    continue
                owner, seen = ast.unparse(node.func.value), seen + 1
                names = {k.arg for k in node.keywords}
                # **kwargs built beside the call (load_model, load_run_model) are checked by the tests above
                if owner != "PeftModel" and "trust_remote_code" not in names and None not in names:
                    unnamed.append(f"{path.relative_to(PROJECT_ROOT)}:{node.lineno} {owner}.from_pretrained")
    assert seen >= 10 and not unnamed, (seen, unnamed)
