"""What a method does unless it or its base says otherwise (the contract is in contract.py).

There is no default `peft_config`: every method chain must build its own PEFT config.
"""
from __future__ import annotations


def check(spec) -> list[tuple[str, str]]:
    return []


def check_launch(spec) -> list[tuple[str, str]]:
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
