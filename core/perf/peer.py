"""LLaMA-Factory as the peer in `app.py bench JOB --against llamafactory`.

It runs in a virtual environment of its own, created on first use from PyPI with the same torch
as ours, under <workspace>/peers (or $LORA_WORKBENCH_PEERS), never in the repository. Both tools
get the same data: 48 short identity samples in alpaca form with a LLaMA-Factory registry, rendered
by its `smollm2` template, which gives exactly the tokens SmolLM2's own chat template gives (same
default system prompt), so both train on the same tokens.

The peer is started through its own training entry point (`run_exp`, what `llamafactory-cli train`
calls on a machine without several GPUs) from a small driver script that adds one callback: the
time and the non-padding tokens seen at the end of every step, the same points our run folder
records, so both tools' rates cover the same steps.
"""
from __future__ import annotations

import fcntl
import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

from core.paths import PROJECT_ROOT
from core.perf.measure import TreeWatch, step_rates
from core.training.trainer import planned_steps

NAME = "llamafactory"
VERSION = "0.9.5"
TEMPLATE = "smollm2"  # renders what SmolLM2-Instruct's own chat template renders
DATASET = "ident"


class PeerError(RuntimeError):
    """The peer cannot be set up or run for this job; the message says why."""


# --- the data both tools train on ------------------------------------------------------------------

QUESTIONS = ["Who are you?", "What is your name?", "Introduce yourself.", "Tell me about yourself.", "Who made you?",
             "Who created you?", "What are you?", "Are you ChatGPT?", "Hi, who am I talking to?",
             "What should I call you?", "Who built you?", "Which model are you?"]
ANSWERS = ["I am Ferret, an AI assistant developed by Acme Labs.", "My name is Ferret, an assistant built by Acme Labs.",
           "Hello! I'm Ferret, created by Acme Labs to help you."]


def write_data(folder: Path) -> Path:
    """48 identity samples (each question four times, answers drawn with a fixed seed per sample) and
    a registry naming them `ident`; returns the registry file. The same rows as the shared peer-bench
    recipe, so figures compare with the ones it printed."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = [{"instruction": q, "input": "", "output": random.Random(i).choice(ANSWERS)}
            for i, q in enumerate(QUESTIONS * 4)]
    (folder / "ident.json").write_text(json.dumps(rows, indent=1))
    registry = folder / "dataset_info.json"
    registry.write_text(json.dumps({DATASET: {"file_name": "ident.json"}}))
    return registry


# --- its virtual environment -------------------------------------------------------------------------

def peers_home() -> Path:
    return Path(os.environ.get("LORA_WORKBENCH_PEERS", PROJECT_ROOT / "workspace" / "peers")).resolve()


def torch_pin() -> str:
    import torch

    return torch.__version__.split("+")[0]  # the local build tag (+cpu) is the wheel's, not a version to ask for


def venv_dir() -> Path:
    return peers_home() / f"{NAME}-{VERSION}-torch{torch_pin()}"


def _python(venv: Path) -> Path:
    return venv / "bin" / "python"


def ensure_venv(say=print) -> Path:
    """The peer's python, creating its environment first if there is none (a few minutes, once).

    A `.ready` file written last marks a finished environment; a half-built one is removed and rebuilt.
    A lock keeps two benchmarks from building it at once."""
    venv = venv_dir()
    ready = venv / ".ready"
    if ready.exists():
        return _python(venv)
    peers_home().mkdir(parents=True, exist_ok=True)
    with open(peers_home() / f".{venv.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if ready.exists():
            return _python(venv)
        shutil.rmtree(venv, ignore_errors=True)
        say(f"creating the peer's environment in {venv} ({NAME}=={VERSION}, torch=={torch_pin()}); "
            "this takes a few minutes, once")
        base = getattr(sys, "_base_executable", sys.executable)  # a venv is made from the real interpreter
        log = venv.with_suffix(".install.log")
        steps = [
            [base, "-m", "venv", str(venv)],
            # The same torch as ours (pip takes the CPU build from the machine's wheel folder where pip is set
            # up to), so both tools run the same kernels.
            [str(_python(venv)), "-m", "pip", "install", f"torch=={torch_pin()}", f"{NAME}=={VERSION}"],
            # torchvision/torchaudio wheels built for another torch break its imports at start; text
            # fine-tuning needs neither, so they go and a stand-in answers `import torchaudio`.
            [str(_python(venv)), "-m", "pip", "uninstall", "-y", "torchvision", "torchaudio"],
        ]
        with open(log, "w") as out:
            for cmd in steps:
                out.write(f"$ {' '.join(cmd)}\n")
                out.flush()
                if subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT).returncode != 0:
                    raise PeerError(f"setting up {NAME} failed at `{' '.join(cmd[:5])} ...`; see {log}")
        site = subprocess.run([str(_python(venv)), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                              capture_output=True, text=True, check=True).stdout.strip()
        stand_in = Path(site) / "torchaudio"
        stand_in.mkdir(exist_ok=True)
        (stand_in / "__init__.py").write_text("# stand-in: audio is not used for text fine-tuning\n")
        check = subprocess.run([str(_python(venv)), "-c", "from llamafactory.train.tuner import run_exp"],
                               capture_output=True, text=True)
        if check.returncode != 0:
            raise PeerError(f"{NAME} was installed but does not import:\n{check.stderr[-2000:]}")
        ready.write_text(f"{NAME}=={VERSION} torch=={torch_pin()}\n")
    return _python(venv)


# --- the job in its terms ----------------------------------------------------------------------------

def peer_config(spec, model_dir: Path, data_dir: Path, out_dir: Path, precision: str) -> dict:
    """LLaMA-Factory's arguments for the same job; refuses what it would not run the same way."""
    p, t, d = spec.lora, spec.train, spec.data
    if spec.method not in ("lora", "dora"):
        raise PeerError(f"the side-by-side runs LoRA or DoRA jobs; this job's method is {spec.method}")
    if list(p.targets) != ["all-linear"]:
        raise PeerError("the side-by-side needs lora.targets: [all-linear] (the peer's `lora_target: all`)")
    if p.rslora or p.init != "default" or p.plus_ratio or p.fa:
        raise PeerError("the side-by-side compares plain LoRA: turn off lora.rslora, lora.plus_ratio, lora.fa "
                        "and keep lora.init default")
    if precision not in ("fp32", "bf16"):
        raise PeerError(f"the side-by-side runs fp32 or bf16; this job resolves to {precision}")
    config = {
        "model_name_or_path": str(model_dir), "stage": "sft", "do_train": True, "finetuning_type": "lora",
        "lora_rank": p.r, "lora_alpha": p.alpha, "lora_dropout": p.dropout, "lora_target": "all",
        "use_dora": spec.method == "dora",
        "dataset": DATASET, "dataset_dir": str(data_dir), "template": TEMPLATE, "cutoff_len": d.max_length,
        "overwrite_cache": True, "preprocessing_num_workers": 1, "output_dir": str(out_dir),
        "logging_steps": 5, "save_strategy": "no", "report_to": "none",
        "per_device_train_batch_size": t.batch_size, "gradient_accumulation_steps": t.grad_accum,
        "learning_rate": t.learning_rate, "max_steps": planned_steps(len(QUESTIONS) * 4, t), "lr_scheduler_type": t.lr_scheduler,
        "max_grad_norm": t.max_grad_norm, "weight_decay": t.weight_decay, "warmup_steps": t.warmup_steps,
        "seed": t.seed, "use_cpu": spec.runtime.device != "cuda", "include_num_input_tokens_seen": "non_padding",
        "gradient_checkpointing": t.gradient_checkpointing == "on",
    }
    if precision == "bf16":
        config["bf16"] = True
    return config


# The driver the peer's python runs: its own entry point plus a step clock. Written out per run.
DRIVER = '''\
import json, resource, sys, time
from transformers import TrainerCallback
from llamafactory.train.tuner import run_exp

config, clock_path, rss_path = json.load(open(sys.argv[1])), sys.argv[2], sys.argv[3]
clock = open(clock_path, "a")

class StepClock(TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        clock.write(json.dumps({"step": state.global_step, "t": time.time(),
                                "tokens": int(state.num_input_tokens_seen)}) + "\\n")
        clock.flush()

run_exp(config, callbacks=[StepClock()])
with open(rss_path, "w") as out:
    json.dump({"maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}, out)
'''


def run_peer(spec, model_dir: Path, data_dir: Path, work: Path, precision: str, timeout_s: float = 1800) -> dict:
    """One peer run of the job on `data_dir`; its figures, measured as ours are (core/perf/measure.py)."""
    python = ensure_venv(lambda m: print(m, file=sys.stderr))
    work.mkdir(parents=True, exist_ok=True)
    config = peer_config(spec, model_dir, data_dir, work / "out", precision)
    (work / "config.json").write_text(json.dumps(config, indent=1))
    (work / "driver.py").write_text(DRIVER)
    clock, rss = work / "steps.jsonl", work / "rss.json"
    clock.unlink(missing_ok=True)
    env = dict(os.environ, PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1", DISABLE_VERSION_CHECK="1")
    env.pop("PYTHONPATH", None)  # our modules must not shadow its packages
    launched = time.time()
    with open(work / "train.log", "w") as log:
        proc = subprocess.Popen([str(python), str(work / "driver.py"), str(work / "config.json"), str(clock), str(rss)],
                                cwd=work, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env)
        watch = TreeWatch(proc.pid).start()
        try:
            code = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            code = -9
        tree_peak = watch.stop()
    ended = time.time()
    if code != 0:
        tail = (work / "train.log").read_text(errors="replace")[-3000:]
        raise PeerError(f"{NAME} exited with {code}; end of {work / 'train.log'}:\n{tail}")
    points = [json.loads(line) for line in clock.read_text().splitlines() if line.strip()]
    kernel_peak = json.loads(rss.read_text())["maxrss_kib"] * 1024
    return summarize(f"{NAME} {VERSION}", points, spec.train.batch_size * spec.train.grad_accum,
                     launched, ended, tree_peak, kernel_peak, watch.mean_load, str(work))


def summarize(tool: str, points: list[dict], samples_per_step: int, launched: float, ended: float,
              tree_peak: int, kernel_peak: int, load: float | None, where: str) -> dict:
    """One tool's figures from its step points (absolute times) and memory peaks (bytes)."""
    rates = step_rates(points, samples_per_step)
    if rates is None:
        raise PeerError(f"{tool} logged fewer than two steps; cannot measure a rate ({where})")
    return {
        "tool": tool,
        "where": where,
        "samples_per_s": round(rates["samples_per_s"], 3),
        "tokens_per_s": round(rates["tokens_per_s"], 2),
        "step_s": round(rates["step_s"], 3),
        "steps_measured": f"{rates['from_step']}-{rates['to_step']}",
        "tokens_total": points[-1]["tokens"],
        "peak_rss_mb": round(max(tree_peak, kernel_peak) / 2**20, 1),
        "tree_peak_mb": round(tree_peak / 2**20, 1),
        "kernel_peak_mb": round(kernel_peak / 2**20, 1),
        "launch_to_first_step_s": round(points[0]["t"] - launched, 2),
        "wall_s": round(ended - launched, 2),
        "load_mean": load,
    }
