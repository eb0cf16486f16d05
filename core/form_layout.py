"""How a job form is laid out: every section of the spec in the spec's order (model and data, then the
methods' own sections, then training and runtime), which of them start open, and which a picked method
shows. The Train tab draws what this says; a method's sections come from the method registry."""
from __future__ import annotations

from dataclasses import dataclass

from core.methods import METHODS
from core.spec import section_types
from core.spec.schema import used_sections

CLOSED_AT_START = ("runtime",)  # rarely changed: folded away until asked for


@dataclass(frozen=True)
class FormSection:
    name: str
    opened: bool
    method_owned: bool  # shown only while a method that reads it is picked


def method_sections() -> list[str]:
    """Sections some method reads, in registry order, each once (DoRA and QLoRA share LoRA's)."""
    return list(dict.fromkeys(name for method in METHODS.values() for name in method.SECTIONS))


def form_sections() -> list[FormSection]:
    owned = set(method_sections())
    return [FormSection(name, name not in CLOSED_AT_START, name in owned) for name in section_types()]


def shown_for(method: str, section: FormSection) -> bool:
    return section.name in used_sections(method)  # the same rule that decides what job.yaml holds
