"""The method registry: one module per fine-tuning method, each built on a base method or on the defaults.

The hook contract is `contract.MethodHooks`; how a module's hooks are resolved is in registry.py.
Adding a method means adding its module and naming it in the tuple below (after the method it extends).
"""
from __future__ import annotations

from core.methods import adalora, dora, longlora, lora, qdora, qlora, vera
from core.methods.contract import MethodHooks, Problem, TrainPlan
from core.methods.registry import METHODS, Method, RegistryError, register

for _module in (lora, dora, qlora, qdora, adalora, longlora, vera):  # picker order; a base before its extensions
    register(_module)

__all__ = ["METHODS", "Method", "MethodHooks", "Problem", "RegistryError", "TrainPlan", "register"]
