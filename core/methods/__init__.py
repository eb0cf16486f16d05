"""The method registry: one module per fine-tuning method, each with the same entry points.

A method module defines:
  NAME, SECTION    its picker name and the spec section holding its parameters
  Params           a dataclass of its parameters (or None if it has none)
  EXPLAINER        one paragraph for the UI: what it changes, what it costs
  check(spec)      -> list of (field, message) problems found before launch
  load_kwargs(spec, device) -> extra keyword arguments for from_pretrained (quantisation)
  peft_config(spec, model) -> the PEFT config to train
  callbacks(spec)  -> extra trainer callbacks
Adding a method means adding its module and one line here.
"""
from core.methods import dora, lora

METHODS = {module.NAME: module for module in (lora, dora)}
