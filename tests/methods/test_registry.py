"""Methods built on a base: a hook a method does not define comes from its base, then the defaults; sections
add up along the chain; the contract is one Protocol; registration refuses what it would silently lose."""
from __future__ import annotations

import dataclasses
import inspect
from types import ModuleType

import pytest

from core.methods import METHODS, MethodHooks, RegistryError, defaults, lora, qdora, qlora, register
from core.methods.contract import HOOKS
from core.spec.schema import opt

BASES = {"lora": None, "dora": "lora", "qlora": "lora", "qdora": "qlora", "longlora": "lora",
         "adalora": None, "vera": None}


def test_each_method_names_its_base():
    assert {name: m.EXTENDS.NAME if m.EXTENDS else None for name, m in METHODS.items()} == BASES


def test_every_hook_of_the_contract_resolves_own_then_base_then_default():
    for method in METHODS.values():
        for hook in HOOKS:
            owner = method.defines(hook)
            expected = vars(owner.module)[hook] if owner else getattr(defaults, hook)
            assert getattr(method, hook) is expected, (method.NAME, hook)
    # The fixes this brings: LongLoRA runs LoRA's PiSSA saving and LoRA+'s rate callback, QDoRA QLoRA's loading.
    assert METHODS["longlora"].save_adapter is lora.save_adapter
    assert METHODS["longlora"].callbacks is lora.callbacks
    assert METHODS["qdora"].load_kwargs is qlora.load_kwargs and METHODS["qdora"].after_wrap is qlora.after_wrap
    assert METHODS["vera"].save_adapter is defaults.save_adapter


def test_no_method_module_copies_a_hook_from_another_method():
    # Inheritance replaces attribute copying (after_wrap = lora.after_wrap): a hook a module holds is its own.
    modules = [m.module for m in METHODS.values()]
    for module in modules:
        for hook in HOOKS:
            held = vars(module).get(hook)
            copied_from = [other.__name__ for other in modules if other is not module and vars(other).get(hook) is held]
            assert held is None or not copied_from, (module.__name__, hook, copied_from)


def test_the_contract_is_one_protocol_and_the_defaults_meet_it():
    assert set(HOOKS) == {"check", "check_launch", "load_kwargs", "prepare_model", "peft_config", "after_wrap",
                          "optimizer", "callbacks", "save_adapter", "inference_kwargs"}
    for hook in HOOKS:
        contract = inspect.signature(getattr(MethodHooks, hook))
        want = [p for p in contract.parameters if p != "self"]
        if hook != "peft_config":  # the one hook without a default
            assert list(inspect.signature(getattr(defaults, hook)).parameters) == want, hook
        for method in METHODS.values():  # every resolved hook takes the contract's arguments
            assert len(inspect.signature(getattr(method, hook)).parameters) == len(want), (method.NAME, hook)


def fake_method(name: str, extends: str | None = None, sections: dict | None = None) -> ModuleType:
    module = ModuleType(f"fake_{name}")
    module.NAME, module.EXPLAINER = name, "a test method"
    if extends:
        module.EXTENDS = extends
    if sections is not None:
        module.SECTIONS = sections
    if not extends:
        module.peft_config = lambda spec, model, plan: None
    return module


def test_a_method_extending_one_gets_its_sections_and_hooks():
    @dataclasses.dataclass
    class Extra:
        depth: int = opt(1, "how deep", lo=0)

    registry = dict(METHODS)
    method = register(fake_method("deeper", extends="qdora", sections={"extra": Extra}), registry)
    assert list(method.SECTIONS) == ["lora", "quant", "extra"]
    assert method.check is qdora.check and method.optimizer is qlora.optimizer and method.EXTENDS is METHODS["qdora"]
    assert "deeper" not in METHODS  # the real registry is untouched


def test_registering_a_taken_name_raises():
    with pytest.raises(RegistryError, match="'lora' is registered twice"):
        register(fake_method("lora"), dict(METHODS))


@pytest.mark.parametrize("section", ["lora", "quant", "train", "model", "method"])
def test_a_section_name_declared_by_two_dataclasses_raises(section):
    @dataclasses.dataclass
    class Other:
        r: int = opt(1, "another r")

    with pytest.raises(RegistryError, match=f"section '{section}'"):
        register(fake_method("other", sections={section: Other}), dict(METHODS))


def test_redeclaring_the_same_dataclass_is_fine_and_bad_bases_raise():
    register(fake_method("again", sections={"lora": lora.Params}), dict(METHODS))
    with pytest.raises(RegistryError, match="not registered before it"):
        register(fake_method("orphan", extends="nothing"), dict(METHODS))
    module = fake_method("empty")
    del module.peft_config
    with pytest.raises(RegistryError, match="no peft_config"):
        register(module, dict(METHODS))
