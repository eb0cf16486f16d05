"""The job spec: schema (`schema`), parsing and overrides (`parse`), and the checks at Start (`launch`)."""
from core.spec.launch import check_launch
from core.spec.parse import (
    SpecError,
    dump_spec,
    load_spec,
    parse_overrides,
    parse_yaml_text,
    spec_from_dict,
)
from core.spec.schema import BUNDLED_MODEL, JobSpec, section_types, spec_fields

__all__ = [
    "BUNDLED_MODEL",
    "JobSpec",
    "SpecError",
    "check_launch",
    "dump_spec",
    "load_spec",
    "parse_overrides",
    "parse_yaml_text",
    "section_types",
    "spec_fields",
    "spec_from_dict",
]
