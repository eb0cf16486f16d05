"""The hook contract every fine-tuning method meets: one typed Protocol, documented here and nowhere else.

A method module (core/methods/<name>.py) declares
  NAME        its picker name
  EXTENDS     the name of the method it builds on ("lora"), or leaves it out
  SECTIONS    {spec section: parameter dataclass} it adds to its base's sections, in form order
  EXPLAINER   one paragraph for the UI: what it changes, what it costs
and defines only the hooks that make it different. The registry (core/methods/registry.py) resolves
every other hook from the base method, then from core/methods/defaults.py, so a registered method
always has every hook below. A hook that adds to its base's behaviour calls the base through
`core.methods.registry.base(NAME)`, e.g. `base(NAME).peft_config(spec, model, plan)`.

The trainer calls the training hooks in the order they are listed; chat and export, which load the
base without the trainer, call only `inference_kwargs`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

Problem = tuple[str, str]  # (dotted field, what is wrong and what would be allowed)


@dataclass
class TrainPlan:
    """Facts about the run that only exist at launch (the data has been read)."""

    total_steps: int  # the optimiser steps the Trainer will run


class MethodHooks(Protocol):
    def check(self, spec) -> list[Problem]:
        """Problems with the method's own fields, from the spec alone (no files, no devices, no libraries).
        Runs whenever a spec is parsed, so a job.yaml opened later must keep passing it."""
        ...

    def check_launch(self, spec) -> list[Problem]:
        """Problems that depend on the world: the model's config, the device, an installed library's backend.
        Runs only at Start, after the spec parsed."""
        ...

    def load_kwargs(self, spec, device: str) -> dict[str, Any]:
        """Extra from_pretrained keyword arguments for training (quantisation, RoPE scaling, attention)."""
        ...

    def prepare_model(self, spec, model):
        """The loaded base model, changed before PEFT wraps it (k-bit preparation, attention settings)."""
        ...

    def peft_config(self, spec, model, plan: TrainPlan | None):
        """The PEFT config to train. `plan` is None when only the adapter's shapes matter (parameter
        counting before launch); a config built then must have the same layers and shapes."""
        ...

    def after_wrap(self, spec, peft_model) -> None:
        """Adjust the wrapped model before the optimiser exists (freeze or unfreeze, keep initial values)."""
        ...

    def optimizer(self, spec, peft_model, args):
        """A torch optimiser to use instead of the Trainer's, or None. `args` are the trainer's arguments
        (learning_rate, weight_decay, adam_beta1/2, adam_epsilon)."""
        ...

    def callbacks(self, spec, peft_model, plan: TrainPlan) -> list:
        """Extra TrainerCallbacks; one with a `metric_extras(state) -> dict` method adds those fields to
        every metrics.jsonl record."""
        ...

    def save_adapter(self, spec, peft_model, folder) -> None:
        """Write the trained adapter into `folder` (an empty temporary folder the trainer renames into
        place), loadable on the ORIGINAL base with PeftModel.from_pretrained."""
        ...

    def inference_kwargs(self, spec) -> dict[str, Any]:
        """from_pretrained keyword arguments the base needs to run with the adapter at chat and export
        (e.g. LongLoRA's RoPE scaling); never quantisation."""
        ...


HOOKS: tuple[str, ...] = tuple(name for name in vars(MethodHooks) if not name.startswith("_")
                               and callable(vars(MethodHooks)[name]))
