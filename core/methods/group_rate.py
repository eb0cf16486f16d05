"""A trainer callback that reports the learning rate one group of parameters really trains at.

The Trainer logs only its first optimiser group's rate; methods that give some parameters their
own rate (LoRA+ speeds up B) use this to put that rate in metrics.jsonl as well.
"""
from __future__ import annotations

from transformers import TrainerCallback


class GroupRateCallback(TrainerCallback):
    def __init__(self, field: str, params):
        self.field = field  # the metrics.jsonl key, e.g. learning_rate_b
        self.ids = {id(p) for p in params}
        self.rate = None

    def on_optimizer_step(self, args, state, control, optimizer=None, **kwargs):
        # Read where the Trainer reads the learning_rate it logs: after the optimiser stepped, before the
        # scheduler moves on, so both figures in a record are the rates that step used.
        for group in optimizer.param_groups if optimizer is not None else ():
            if any(id(p) in self.ids for p in group["params"]):
                self.rate = group["lr"]
                return

    def metric_extras(self, state) -> dict:
        return {self.field: self.rate} if self.rate is not None else {}
