"""The job form's layout: every spec section once, in the spec's order, the methods' own shown only for them."""
from __future__ import annotations

from core.form_layout import form_sections, method_sections, shown_for
from core.methods import METHODS
from core.spec import section_types


def test_every_section_once_in_spec_order():
    names = [s.name for s in form_sections()]
    assert names == list(section_types())
    assert names[:2] == ["model", "data"] and names[-2:] == ["train", "runtime"]
    assert {s.name for s in form_sections() if not s.opened} == {"runtime"}


def test_a_method_shows_its_own_sections_and_the_fixed_ones():
    assert set(method_sections()) == {name for m in METHODS.values() for name in m.SECTIONS}
    for method in METHODS:
        shown = {s.name for s in form_sections() if shown_for(method, s)}
        assert shown == {"model", "data", "train", "runtime", *METHODS[method].SECTIONS}
