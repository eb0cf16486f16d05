"""Launch checks: what a parsed job needs from the world at Start, and only there.

The model must be reachable, every dataset must be readable and well-formed, the device must be
present, and the method's own launch checks must pass (a library backend, the model's config).
Opening an existing run never calls this: a finished run stays usable when its dataset moved,
the hub is offline, or the machine has no GPU.
"""
from __future__ import annotations

from pathlib import Path

from core.spec.parse import SpecError
from core.spec.schema import JobSpec, used_sections


def check_launch(spec: JobSpec) -> None:
    """Raise SpecError naming every problem by field, or return when the job can start here."""
    from core.methods import METHODS

    problems = _model_problems(spec) + _init_adapter_problems(spec) + _data_problems(spec) + _device_problems(spec)
    reported = {key for key, _ in problems}
    problems += [p for p in METHODS[spec.method].check_launch(spec) if p[0] not in reported]
    if problems:
        raise SpecError(problems)


def _model_problems(spec: JobSpec) -> list[tuple[str, str]]:
    from core.models.source import ModelSourceError, resolve_model

    try:
        resolve_model(spec.model.path)
    except ModelSourceError as err:
        return [("model.path", str(err))]
    return []


def _init_adapter_problems(spec: JobSpec) -> list[tuple[str, str]]:
    """The adapter a job starts from must be there, and (when it is a run's) come from the same method and base."""
    import yaml

    folder = spec.model.init_adapter
    if not folder:
        return []
    path = Path(folder).expanduser()
    if not (path / "adapter_config.json").is_file():
        return [("model.init_adapter", f"no adapter at {folder} (a run's adapter/ folder holds adapter_config.json)")]
    if "lora" in used_sections(spec.method) and spec.lora.init.startswith("pissa"):
        return [("model.init_adapter", "lora.init pissa builds a new adapter from the base's weights; "
                                       "it cannot start from an existing adapter (use lora.init default)")]
    try:
        run_job = yaml.safe_load((path.parent / "job.yaml").read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return []  # not a run's adapter: the trainer finds out whether it fits
    method = run_job.get("method")
    base = (run_job.get("model") or {}).get("path")
    if method and method != spec.method:
        return [("model.init_adapter", f"the adapter was trained with method {method}, this job uses {spec.method}")]
    if base and base != spec.model.path:
        return [("model.init_adapter", f"the adapter was trained on {base}, this job's base is {spec.model.path}")]
    return []


def _data_problems(spec: JobSpec) -> list[tuple[str, str]]:
    """Read every dataset now, so bad data is refused before a run folder exists, naming each bad line."""
    from core.data.registry import DatasetError, read_registry
    from core.data.source import check_datasets

    if spec.data.registry:
        try:
            read_registry(spec.data.registry)
        except DatasetError as err:  # every name would fail for this one reason: say it once, at its field
            return [("data.registry", str(err))]
    return [("data.dataset", "\n".join(report.lines()))
            for report in check_datasets(spec.data.dataset, spec.data.registry) if not report.usable]


def _device_problems(spec: JobSpec) -> list[tuple[str, str]]:
    if spec.runtime.device != "cuda":
        return []
    import torch

    if torch.cuda.is_available():
        return []
    return [("runtime.device", "cuda was asked for but no CUDA GPU is visible; use auto or cpu")]
