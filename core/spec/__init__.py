"""The job spec: schema (`schema`), loading, overrides and validation (`validate`)."""
from core.spec.schema import BUNDLED_MODEL, JobSpec, section_types, spec_fields
from core.spec.validate import (
    SpecError,
    dump_spec,
    load_spec,
    parse_overrides,
    parse_yaml_text,
    spec_from_dict,
)

__all__ = [
    "BUNDLED_MODEL",
    "JobSpec",
    "SpecError",
    "dump_spec",
    "load_spec",
    "parse_overrides",
    "parse_yaml_text",
    "section_types",
    "spec_fields",
    "spec_from_dict",
]
