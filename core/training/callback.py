"""The trainer-side half of the run-folder contract: a TrainerCallback that
appends metrics.jsonl, keeps status.json current and honours stop requests.

In a group run every rank has one; only rank 0 (the Trainer's world process zero) writes, and every rank
takes part in deciding to stop, so they all stop at the same step."""
from __future__ import annotations

import resource
import time

import torch
from transformers import TrainerCallback

from core.runs.folder import RunFolder
from core.runtime.distributed import agree


def peak_memory_mb(device: str) -> float:
    """Peak allocated GPU memory when the run trains on CUDA, else the process's peak RSS. Decided by the
    run's device, not by whether CUDA is set up: on a GPU machine a CPU run's libraries may set it up too,
    and its GPU peak (0) is not the run's."""
    if device.startswith("cuda") and torch.cuda.is_available() and torch.cuda.is_initialized():
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def elapsed_before(run: RunFolder, step: int) -> float:
    """Training time already in metrics.jsonl up to `step` (a resumed attempt's records go on from it, so
    elapsed_s, the wall-time axis, is one continuous curve); 0 for a fresh run."""
    if step <= 0:
        return 0.0
    records = [r for r in run.read_metrics()[0] if (r.get("step") or 0) <= step and r.get("elapsed_s") is not None]
    return float(records[-1]["elapsed_s"]) if records else 0.0


class RunFolderCallback(TrainerCallback):
    def __init__(self, run: RunFolder, samples_per_step: int, device: str, extras=(), prediction: dict | None = None):
        self.run = run
        self.device = device
        self.samples_per_step = samples_per_step
        # The pre-launch estimate (core/training/levers.py), checked against the run in status.json at the end.
        self.prediction = prediction
        self.step_times: list[float] = []
        # Method callbacks that add fields to each record (e.g. AdaLoRA's ranks) via metric_extras(state).
        self.extras = [cb for cb in extras if hasattr(cb, "metric_extras")]
        self.started = None
        self.elapsed_before = 0.0  # training time of earlier attempts, when this one resumes
        self.last_time = None
        self.last_tokens = 0
        self.last_step = 0

    def on_train_begin(self, args, state, control, **kwargs):
        self.started = self.last_time = time.time()
        self.elapsed_before = elapsed_before(self.run, state.global_step)
        self.last_tokens = state.num_input_tokens_seen
        self.last_step = state.global_step
        extra = {"estimate": {"predicted": self.prediction}} if self.prediction else {}
        # metrics' elapsed_s counts from here; the benchmark turns it into wall-clock times with this
        if state.is_world_process_zero:
            self.run.write_status(step=state.global_step, total_steps=state.max_steps, train_started_at=self.started,
                                  **extra)

    def on_step_end(self, args, state, control, **kwargs):
        self.step_times.append(time.time())
        if state.is_world_process_zero:
            self.run.write_status(step=state.global_step, total_steps=state.max_steps)
        # Each rank looks in its own node's run folder; one request stops every rank.
        if agree(self.run.stop_requested()):
            control.should_training_stop = True
            control.should_save = True

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        if not state.is_world_process_zero:
            return  # the logged figures are already gathered over all ranks; rank 0 writes them
        if "loss" not in logs and "eval_loss" not in logs:
            return  # the end-of-training summary; its figures are already in the series
        now = time.time()
        elapsed = now - self.started + self.elapsed_before
        record = {"step": state.global_step, "epoch": round(state.epoch or 0.0, 4)}
        if "loss" in logs:
            span = max(now - self.last_time, 1e-9)
            steps = state.global_step - self.last_step
            record.update(
                loss=logs["loss"],
                learning_rate=logs.get("learning_rate"),
                grad_norm=logs.get("grad_norm"),
                tokens_per_second=round((state.num_input_tokens_seen - self.last_tokens) / span, 2),
                samples_per_second=round(steps * self.samples_per_step / span, 3),
                tokens_seen=int(state.num_input_tokens_seen),
            )
            self.last_time, self.last_tokens, self.last_step = now, state.num_input_tokens_seen, state.global_step
        if "eval_loss" in logs:
            record["eval_loss"] = logs["eval_loss"]
        done = max(state.global_step, 1)
        record.update(
            memory_mb=round(peak_memory_mb(self.device), 1),
            elapsed_s=round(elapsed, 2),
            eta_s=round(elapsed / done * max(state.max_steps - state.global_step, 0), 1),
        )
        for cb in self.extras:
            record.update(cb.metric_extras(state))
        self.run.append_metrics(record)

    def on_train_end(self, args, state, control, **kwargs):
        if not self.prediction:
            return
        times = self.step_times
        # Mean step time from the end of the first step on, so loading and warm-up are not in it.
        step_s = (times[-1] - times[0]) / (len(times) - 1) if len(times) > 1 else None
        measured = {"peak_mb": round(peak_memory_mb(self.device), 1), "step_s": round(step_s, 3) if step_s else None}
        self.run.write_status(estimate={"predicted": self.prediction, "measured": measured})
