"""Build controls from declarations: one component per `opt()` field of the job spec's sections or of any
options dataclass (export, generation), in declaration order, with label, help, bounds and default from it.

Nothing here names a field: adding a field to a declaration adds it to the form. Each component's elem_id
is derived from the field's dotted name and recorded in FIELD_IDS, which is how the page's one relabel
function finds it.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import gradio as gr

from core.options import declared_fields
from core.spec import JobSpec, section_types
from webui import i18n

# elem_id -> (dotted name, field) of every field component ever drawn; the same for every page.
FIELD_IDS: dict[str, tuple[str, dataclasses.Field]] = {}


def field_id(dotted: str) -> str:
    return "field-" + dotted.replace(".", "-").replace("_", "-")


CHECKBOX_CLASS = "wb-checkbox"
# Gradio gives a checkbox's block no minimum width, so in a row of wider fields its label and help were squeezed
# to a few letters a line; the page's style (webui/app.py) gives it the width the other fields get.
FORM_CSS = f".{CHECKBOX_CLASS} {{ min-width: min(200px, 100%) !important; }}"


def range_note(meta) -> str:
    lo, hi = meta.get("lo"), meta.get("hi")
    if lo is not None and hi is not None:
        return f" [{lo:g} – {hi:g}]"
    if lo is not None:
        return f" [≥ {lo:g}]"
    return ""


def field_text(dotted: str, f: dataclasses.Field, lang: str) -> dict[str, str]:
    """A field component's label and info line in `lang`."""
    return {"label": i18n.field_label(dotted, lang),
            "info": i18n.field_help(dotted, f.metadata["help"], lang) + range_note(f.metadata)}


def field_component(dotted: str, f: dataclasses.Field, value: Any, lang: str, choices=None):
    """The control for one field; `choices` are suggestions (or (label, value) pairs) for a free-text field."""
    meta = f.metadata
    common = {**field_text(dotted, f, lang), "elem_id": field_id(dotted)}
    FIELD_IDS[common["elem_id"]] = (dotted, f)
    if f.type == "bool":
        return gr.Checkbox(value=value, elem_classes=[CHECKBOX_CLASS], **common)
    if meta.get("multi"):
        return gr.CheckboxGroup(choices=meta["choices"], value=value, **common)
    if meta.get("choices"):
        return gr.Dropdown(choices=meta["choices"], value=value, **common)
    if choices is not None:
        return gr.Dropdown(choices=choices, value=value, allow_custom_value=True, **common)
    if f.type in ("int", "float"):
        # No client-side minimum/maximum: Gradio would silently swallow the click, while the
        # declaration's validation names the field and the allowed range in the message.
        return gr.Number(value=value, precision=0 if f.type == "int" else None, **common)
    return gr.Textbox(value=value, **common)


def option_problems(group: str, problems: list[tuple[str, str]]) -> list:
    """A message (i18n.render parts) listing bad option values, each under its label in the page's language."""
    import html

    lines = [["\n- **", {"field": f"{group}.{name}"}, f"** (`{name}`): {html.escape(message)}"] for name, message in problems]
    return ["**", ["options.invalid"], "**"] + [part for line in lines for part in line]


class FieldForm:
    """Controls for the fields of declarations, keyed by dotted name ("export.shard_size", "lora.r")."""

    def __init__(self, lang: str = "en", choices_for=None):
        self.components: dict[str, gr.components.Component] = {}
        self.fields: dict[str, dataclasses.Field] = {}
        self.lang = lang
        self.choices_for = choices_for  # kind -> suggestions for free-text fields of that kind, or None

    def render(self, group: str, cls, values=None, only: tuple[str, ...] | None = None) -> list:
        """Draw the fields of dataclass `cls` (or `only` those) as group `group`, with values from `values`
        (default: cls()). Drawing a group in several calls lets a tab lay its fields out in rows."""
        values = values if values is not None else cls()
        drawn = []
        for f in declared_fields(cls):
            if only is not None and f.name not in only:
                continue
            dotted = f"{group}.{f.name}"
            choices = self.choices_for(f.metadata.get("kind")) if self.choices_for else None
            self.fields[dotted] = f
            self.components[dotted] = field_component(dotted, f, getattr(values, f.name), self.lang, choices)
            drawn.append(self.components[dotted])
        return drawn

    def group_keys(self, group: str) -> list[str]:
        return [d for d in self.components if d.split(".", 1)[0] == group]

    def group_inputs(self, group: str) -> list:
        return [self.components[d] for d in self.group_keys(group)]

    def group_values(self, group: str, values: list) -> dict[str, Any]:
        """Values from `group_inputs(group)` as {field name: value}, ready for core.options.build_options."""
        return {d.split(".", 1)[1]: v for d, v in zip(self.group_keys(group), values)}

    @property
    def inputs(self) -> list:
        return list(self.components.values())


class JobForm(FieldForm):
    """The job spec's sections as accordions of controls, plus conversions both ways."""

    def __init__(self, lang: str = "en", choices_for=None):
        super().__init__(lang, choices_for)
        self.section_boxes: dict[str, gr.Accordion] = {}

    def render_section(self, section: str, open: bool = True, defaults: JobSpec | None = None, after=None):
        """Draw one spec section's fields inside an accordion (its title comes from the locale, by id);
        `after()`, when given, draws more inside it, below the fields."""
        defaults = defaults or JobSpec()
        with gr.Accordion(open=open, **i18n.props(f"section-{section}", self.lang)) as box:
            with gr.Row(equal_height=False):
                self.render(section, section_types()[section], defaults.sections[section])
            if after is not None:
                after()
        self.section_boxes[section] = box
        return box

    def to_dict(self, method: str, values: list, keys: list[str] | None = None) -> dict:
        """Form values -> nested job data for core.spec.spec_from_dict (which validates).

        `values` follow `keys` (dotted field names), by default every field in form order. An emptied
        number box arrives as None and is passed on: the spec refuses it by name, rather than quietly
        training with the declaration's default where the user last saw a preset's value.
        """
        data: dict[str, Any] = {"method": method}
        for dotted, value in zip(self.components if keys is None else keys, values):
            section, key = dotted.split(".", 1)
            data.setdefault(section, {})[key] = value
        return data

    def values_from(self, spec: JobSpec) -> list:
        return [spec.get(dotted) for dotted in self.components]
