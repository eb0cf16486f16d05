"""A chat template that renders for too long is stopped with a message: in any thread, before launch, in the
trainer's encoding (which Stop cannot reach before the first step), and in the Data tab's preview, which must
not wait once per sample."""
from __future__ import annotations

import json
import shutil
import threading
import time

import pytest

from core.data import template_limit
from core.data.encode import encode_full
from core.data.preview import length_stats, preview_page
from core.data.source import open_dataset
from core.data.template_limit import TemplateTimeout, render_chat
from core.models.loading import load_tokenizer
from core.spec import SpecError, check_launch
from tests.helpers import tiny_spec, wait_for_end

ENDLESS = "{% for i in range(99999) %}{% for j in range(99999) %}{% endfor %}{% endfor %}"
# Loops only on a message holding LOOP: a plain conversation renders, one sample of the data does not.
ON_LOOP = ("{% for m in messages %}{% if 'LOOP' in m['content'] %}" + ENDLESS + "{% endif %}"
           "{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}{% endfor %}"
           "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
CHAT = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]


def model_with_template(tmp_path, tiny_model_dir, template: str):
    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir, folder)
    (folder / "chat_template.jinja").write_text(template)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    return folder


@pytest.fixture
def short_limit(monkeypatch):
    monkeypatch.setattr(template_limit, "RENDER_LIMIT_S", 1.0)


def test_a_looping_template_is_stopped_in_any_thread(tmp_path, tiny_model_dir, short_limit):
    tokenizer = load_tokenizer(str(model_with_template(tmp_path, tiny_model_dir, ENDLESS)))
    outcome = {}

    def render():
        started = time.monotonic()
        try:
            render_chat(tokenizer, CHAT, tokenize=False)
        except TemplateTimeout as err:
            outcome["seconds"], outcome["message"] = time.monotonic() - started, str(err)

    worker = threading.Thread(target=render)  # a web server renders in its worker threads
    worker.start()
    worker.join(timeout=30)
    assert not worker.is_alive() and 0.9 < outcome["seconds"] < 10 and "chat template" in outcome["message"]
    with pytest.raises(TemplateTimeout):
        encode_full(tokenizer, {"messages": CHAT})
    assert isinstance(TemplateTimeout("x"), RuntimeError) and not isinstance(TemplateTimeout("x"), ValueError)
    # An ordinary template renders as before, and the trace is gone afterwards.
    import sys

    assert render_chat(load_tokenizer(str(tiny_model_dir)), CHAT, tokenize=False).startswith("<|im_start|>")
    assert sys.gettrace() is None


def test_launch_refuses_a_template_that_loops(tmp_path, tiny_model_dir, short_limit):
    folder = model_with_template(tmp_path, tiny_model_dir, ENDLESS)
    started = time.monotonic()
    with pytest.raises(SpecError) as err:
        check_launch(tiny_spec(folder))
    assert time.monotonic() - started < 30
    assert [k for k, _ in err.value.problems] == ["model.path"] and "did not finish rendering" in str(err.value)
    broken = model_with_template(tmp_path / "b", tiny_model_dir, "{% for %}")
    with pytest.raises(SpecError, match="chat template fails"):
        check_launch(tiny_spec(broken))


def test_preview_stops_at_the_first_slow_sample_instead_of_waiting_for_each(tmp_path, tiny_model_dir, short_limit):
    tokenizer = load_tokenizer(str(model_with_template(tmp_path, tiny_model_dir, ENDLESS)))
    data = open_dataset("identity")
    started = time.monotonic()
    with pytest.raises(TemplateTimeout):
        preview_page(data, tokenizer, 0, 4, 512)
    with pytest.raises(TemplateTimeout):
        length_stats(data, tokenizer, 512)
    assert time.monotonic() - started < 10  # two renders stopped, not one wait per sample


def test_the_trainers_encoding_is_stopped_and_the_run_fails_naming_it(tmp_path, tiny_model_dir, workspace):
    from core.runs import runner

    folder = model_with_template(tmp_path, tiny_model_dir, ON_LOOP)
    data = tmp_path / "data.jsonl"
    rows = [{"instruction": f"question {i}", "output": "answer"} for i in range(7)] + [{"instruction": "LOOP", "output": "x"}]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    spec = tiny_spec(folder, data={"dataset": str(data), "max_samples": 0})
    check_launch(spec)  # a plain conversation renders: only the trainer meets the looping sample
    started = time.monotonic()
    status = wait_for_end(runner.start(spec, workspace), timeout_s=240)
    assert status["state"] == "failed" and status["error"]["kind"] == "TemplateTimeout", status
    assert "did not finish rendering within 10 s" in status["error"]["message"]
    assert time.monotonic() - started < 200
