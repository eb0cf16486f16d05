"""Launch checks: what a parsed job needs from the world at Start, and only there.

The model must be reachable and load without code from its folder (unless the job allows that code), its
chat template must render a conversation in time, every dataset must be readable and well-formed, the device
must be present, and the method's own launch checks must pass (a library backend, the model's config).
The web server passes its AccessPolicy: then datasets and registries must lie in the folders it reads, and a
job may ask for code from its model folder only where the operator allowed that.
Opening an existing run never calls this: a finished run stays usable when its dataset moved,
the hub is offline, or the machine has no GPU.
"""
from __future__ import annotations

from core.spec.parse import SpecError
from core.spec.schema import JobSpec

# Rendered through the model's chat template at launch: a template that loops is stopped here, with its
# message, instead of hanging the trainer before its first step. No system turn: some templates refuse one.
SAMPLE_CONVERSATION = ({"role": "user", "content": "Hello, who are you?"},
                       {"role": "assistant", "content": "I am a helpful assistant."})


def check_launch(spec: JobSpec, policy=None) -> None:
    """Raise SpecError naming every problem by field, or return when the job can start here.
    `policy` (core.safety.access.AccessPolicy) is the web server's; the CLI passes none and may use any file."""
    from core.methods import METHODS

    problems = _model_problems(spec, policy)
    if not problems:
        problems += _template_problems(spec)
    problems += _data_problems(spec, policy) + _device_problems(spec)
    reported = {key for key, _ in problems}
    problems += [p for p in METHODS[spec.method].check_launch(spec) if p[0] not in reported]
    if problems:
        raise SpecError(problems)


def _model_problems(spec: JobSpec, policy=None) -> list[tuple[str, str]]:
    from core.models.remote_code import refusal
    from core.models.source import ModelSourceError, resolve_model

    try:
        source = resolve_model(spec.model.path)
    except ModelSourceError as err:
        return [("model.path", str(err))]
    not_here = policy.remote_code_refusal(spec.model.trust_remote_code) if policy is not None else None
    if not_here:
        return [("model.trust_remote_code", not_here)]
    refused = refusal(source, spec.model.trust_remote_code)  # before anything loads: never a "[y/N]" prompt
    return [("model.path", refused)] if refused else []


def _template_problems(spec: JobSpec) -> list[tuple[str, str]]:
    """Render a short conversation through the model's chat template, within the render time limit."""
    from core.data.template_limit import TemplateTimeout, render_chat
    from core.models.loading import load_tokenizer

    try:
        tokenizer = load_tokenizer(spec.model.path, spec.model.trust_remote_code)
    except Exception as err:  # transformers raises many types for a broken tokenizer; all mean "cannot train"
        return [("model.path", f"the model's tokenizer cannot be loaded: {type(err).__name__}: {str(err)[:500]}")]
    try:
        render_chat(tokenizer, list(SAMPLE_CONVERSATION), tokenize=False)
        render_chat(tokenizer, list(SAMPLE_CONVERSATION[:1]), tokenize=False, add_generation_prompt=True)
    except TemplateTimeout as err:
        return [("model.path", str(err))]
    except Exception as err:  # a Jinja error or the template's own raise_exception
        return [("model.path", f"the model's chat template fails on a plain user/assistant conversation: "
                               f"{type(err).__name__}: {str(err)[:500]}")]
    return []


def _data_problems(spec: JobSpec, policy=None) -> list[tuple[str, str]]:
    """Read every dataset now, so bad data is refused before a run folder exists, naming each bad line."""
    from core.data.registry import DatasetError, read_registry
    from core.data.source import check_datasets

    if spec.data.registry:
        try:
            read_registry(spec.data.registry, policy)
        except DatasetError as err:  # every name would fail for this one reason: say it once, at its field
            return [("data.registry", str(err))]
    return [("data.dataset", "\n".join(report.lines()))
            for report in check_datasets(spec.data.dataset, spec.data.registry, policy=policy) if not report.usable]


def _device_problems(spec: JobSpec) -> list[tuple[str, str]]:
    if spec.runtime.device != "cuda":
        return []
    import torch

    if torch.cuda.is_available():
        return []
    return [("runtime.device", "cuda was asked for but no CUDA GPU is visible; use auto or cpu")]
