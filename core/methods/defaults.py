"""What a method does unless its module says otherwise.

A method module defines NAME, SECTIONS, EXPLAINER and peft_config, and any of the hooks
below that it needs; `core.methods.hook` falls back to these. The trainer calls them in this order:

  check(spec)                      problems (field, message) found before launch
  load_kwargs(spec, device)        extra from_pretrained keyword arguments (quantisation, RoPE scaling)
  prepare_model(spec, model)       the loaded base model, changed before PEFT wraps it (k-bit preparation,
                                   attention patches); returns the model
  peft_config(spec, model, plan)   the PEFT config to train (required; `plan.total_steps` is the real step count)
  after_wrap(spec, peft_model)     adjust the wrapped model before the optimiser exists (freeze or unfreeze)
  optimizer(spec, peft_model, args) a torch optimiser to use instead of the Trainer's, or None
  callbacks(spec, peft_model, plan) extra TrainerCallbacks; one with a `metric_extras(state) -> dict` method
                                   adds those fields to every metrics.jsonl record
  save_adapter(spec, peft_model, folder) write the trained adapter into `folder` (an empty temporary folder the
                                   trainer renames into place), loadable on the ORIGINAL base with
                                   PeftModel.from_pretrained; PiSSA converts its adapter here
and, for chat and export (which load the base without the trainer):
  inference_kwargs(spec)           from_pretrained keyword arguments the base needs to run with the
                                   adapter at inference (e.g. LongLoRA's RoPE scaling); never quantisation
"""
from __future__ import annotations


def check(spec) -> list[tuple[str, str]]:
    return []


def load_kwargs(spec, device: str) -> dict:
    return {}


def prepare_model(spec, model):
    return model


def after_wrap(spec, peft_model) -> None:
    return None


def optimizer(spec, peft_model, args):
    return None


def callbacks(spec, peft_model, plan) -> list:
    return []


def save_adapter(spec, peft_model, folder) -> None:
    peft_model.save_pretrained(folder)


def inference_kwargs(spec) -> dict:
    return {}
