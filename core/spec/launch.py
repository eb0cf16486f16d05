"""Launch checks: what a parsed job needs from the world at Start, and only there.

The model must be reachable, every dataset must be readable and well-formed, the devices must be
present (enough of them for the processes, and of the kind the strategy needs), and the method's own
launch checks must pass (a library backend, the model's config).
Opening an existing run never calls this: a finished run stays usable when its dataset moved,
the hub is offline, or the machine has no GPU.
"""
from __future__ import annotations

from core.spec.parse import SpecError
from core.spec.schema import JobSpec


def check_launch(spec: JobSpec) -> None:
    """Raise SpecError naming every problem by field, or return when the job can start here."""
    from core.methods import METHODS

    problems = _model_problems(spec) + _data_problems(spec) + _device_problems(spec)
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
    """The devices, processes and strategy the job asks for, against what this machine has."""
    from core.runtime.layout import launch_problems

    return launch_problems(spec)
