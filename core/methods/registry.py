"""Register method modules as Methods: declarations merged with their base's, every hook resolved.

A hook a module does not define comes from the method it EXTENDS (itself resolved the same way),
then from defaults.py. Registration refuses what would otherwise be silently lost: a second method
of the same name, a section name that two different dataclasses declare, a base that is not yet
registered, a method chain with no peft_config.
"""
from __future__ import annotations

from types import ModuleType

from core.methods import defaults
from core.methods.contract import HOOKS, MethodHooks


class RegistryError(RuntimeError):
    """A method module cannot be registered; raised at import, so a broken registry never starts."""


class Method(MethodHooks):
    """One registered method. Declarations keep the module's names (NAME, SECTIONS, EXPLAINER), with
    SECTIONS holding the base's sections and then its own; EXTENDS is the base Method or None.
    Each hook of MethodHooks is an attribute holding the function that runs."""

    def __init__(self, module: ModuleType, base: Method | None):
        self.module = module
        self.NAME: str = module.NAME
        self.EXPLAINER: str = module.EXPLAINER
        self.EXTENDS = base
        self.SECTIONS: dict[str, type] = {**(base.SECTIONS if base else {}), **getattr(module, "SECTIONS", {})}
        for hook in HOOKS:
            own = vars(module).get(hook)  # defined (or assigned) in the module itself, not inherited
            inherited = getattr(base, hook) if base is not None else getattr(defaults, hook, None)
            setattr(self, hook, own if own is not None else inherited)

    def defines(self, hook: str):
        """The Method whose module defines the hook this method runs (None: the default)."""
        method = self
        while method is not None and hook not in vars(method.module):
            method = method.EXTENDS
        return method

    def __repr__(self) -> str:
        return f"<method {self.NAME}" + (f" extends {self.EXTENDS.NAME}>" if self.EXTENDS else ">")


METHODS: dict[str, Method] = {}


def register(module: ModuleType, methods: dict[str, Method] = METHODS) -> Method:
    """Add the module's method to `methods` (the registry by default) and return it."""
    from core.spec.schema import fixed_sections

    name = module.NAME
    if name in methods:
        raise RegistryError(f"method '{name}' is registered twice ({methods[name].module.__name__} and {module.__name__})")
    base_name = getattr(module, "EXTENDS", None)
    if base_name is not None and base_name not in methods:
        raise RegistryError(f"method '{name}' extends '{base_name}', which is not registered before it")
    declared = {**fixed_sections(), "method": None}
    for other in methods.values():
        declared.update(other.SECTIONS)
    for section, params in getattr(module, "SECTIONS", {}).items():
        if section in declared and declared[section] is not params:
            raise RegistryError(f"method '{name}' declares section '{section}', which is already declared by "
                                f"{getattr(declared[section], '__qualname__', 'the job spec itself')}")
    method = Method(module, methods[base_name] if base_name else None)
    if method.peft_config is None:
        raise RegistryError(f"method '{name}' has no peft_config, nor does any method it extends")
    methods[name] = method
    return method


def base(name: str) -> Method:
    """The method that `name` extends, hooks resolved: for a hook that adds to its base's behaviour,
    e.g. `base(NAME).after_wrap(spec, peft_model)` inside core/methods/<NAME>.py."""
    base_method = METHODS[name].EXTENDS
    if base_method is None:
        raise RegistryError(f"method '{name}' extends no method")
    return base_method
