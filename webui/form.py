"""Build the job form from the spec: one component per spec field, in spec order.

Nothing here names a field: adding a field to the spec adds it to the form.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import gradio as gr

from core.spec import JobSpec, section_types, spec_fields
from webui import i18n


def field_component(dotted: str, f: dataclasses.Field, value: Any, lang: str, choices_for=None):
    meta = f.metadata
    label = i18n.field_label(dotted, lang)
    info = i18n.field_help(dotted, meta["help"], lang) + range_note(meta)
    elem_id = "field-" + dotted.replace(".", "-").replace("_", "-")
    common = {"label": label, "info": info, "elem_id": elem_id}
    extra_choices = choices_for(meta.get("kind")) if choices_for else None
    if f.type == "bool":
        return gr.Checkbox(value=value, **common)
    if meta.get("multi"):
        return gr.CheckboxGroup(choices=meta["choices"], value=value, **common)
    if meta.get("choices"):
        return gr.Dropdown(choices=meta["choices"], value=value, **common)
    if extra_choices is not None:
        return gr.Dropdown(choices=extra_choices, value=value, allow_custom_value=True, **common)
    if f.type in ("int", "float"):
        # No client-side minimum/maximum: Gradio would silently swallow the click, while the
        # spec's validation names the field and the allowed range in the message.
        return gr.Number(value=value, precision=0 if f.type == "int" else None, **common)
    return gr.Textbox(value=value, **common)


def range_note(meta) -> str:
    lo, hi = meta.get("lo"), meta.get("hi")
    if lo is not None and hi is not None:
        return f" [{lo:g} – {hi:g}]"
    if lo is not None:
        return f" [≥ {lo:g}]"
    return ""


class JobForm:
    """The spec's fields as Gradio components, plus conversions both ways."""

    def __init__(self, lang: str = "en", choices_for=None):
        self.components: dict[str, gr.components.Component] = {}
        self.fields: dict[str, dataclasses.Field] = {}
        self.section_boxes: dict[str, gr.Accordion] = {}
        self.lang = lang
        self.choices_for = choices_for

    def render_section(self, section: str, open: bool = True, defaults: JobSpec | None = None):
        """Draw one spec section's fields inside an accordion."""
        defaults = defaults or JobSpec()
        cls = section_types()[section]
        with gr.Accordion(i18n.text(f"section.{section}", self.lang), open=open, elem_id=f"section-{section}") as box:
            with gr.Row(equal_height=False):
                for f in spec_fields(cls):
                    dotted = f"{section}.{f.name}"
                    self.fields[dotted] = f
                    self.components[dotted] = field_component(
                        dotted, f, getattr(defaults.sections[section], f.name), self.lang, self.choices_for
                    )
        self.section_boxes[section] = box
        return box

    @property
    def inputs(self) -> list:
        return list(self.components.values())

    def to_dict(self, method: str, values: list, keys: list[str] | None = None) -> dict:
        """Form values -> nested job data for core.spec.spec_from_dict (which validates).

        `values` follow `keys` (dotted field names), by default every field in form order.
        """
        data: dict[str, Any] = {"method": method}
        for dotted, value in zip(self.components if keys is None else keys, values):
            section, key = dotted.split(".", 1)
            if value is None:
                continue  # an emptied number box: leave the spec default
            data.setdefault(section, {})[key] = value
        return data

    def values_from(self, spec: JobSpec) -> list:
        return [spec.get(dotted) for dotted in self.components]

    def relabel(self, lang: str) -> list:
        return [
            gr.update(
                label=i18n.field_label(d, lang),
                info=i18n.field_help(d, self.fields[d].metadata["help"], lang) + range_note(self.fields[d].metadata),
            )
            for d in self.components
        ]
