"""Launch checks: what a parsed job needs from the world at Start, and only there.

The model must be reachable, its folder whole (config, weight headers, tokenizer) and loadable without code
from it (unless the job allows that code), and its chat template must render a conversation in time; every
dataset must be readable and well-formed and fit the job (the eval split leaves samples on both sides, some
answer survives the max_length cut); the devices must be present (enough of them for the
processes, and of the kind the strategy needs) and suit the precision; and the method's own
launch checks must pass (a library backend, the model's config). What does not stop a run but deserves a
word (no chat template in the model, too little free disk) comes back as notes.
The web server passes its AccessPolicy: then datasets and registries must lie in the folders it reads, and a
job may ask for code from its model folder only where the operator allowed that.
Opening an existing run never calls this: a finished run stays usable when its dataset moved,
the hub is offline, or the machine has no GPU.
"""
from __future__ import annotations

from pathlib import Path

from core.spec.parse import SpecError
from core.spec.rules import precision_problem
from core.spec.schema import JobSpec, used_sections

# Rendered through the model's chat template at launch: a template that loops is stopped here, with its
# message, instead of hanging the trainer before its first step. No system turn: some templates refuse one.
SAMPLE_CONVERSATION = ({"role": "user", "content": "Hello, who are you?"},
                       {"role": "assistant", "content": "I am a helpful assistant."})


def check_launch(spec: JobSpec, policy=None) -> list[str]:
    """Raise SpecError naming every problem by field, or return the notes for a job that can start here
    (they are added to `spec.notes` too). `policy` (core.safety.access.AccessPolicy) is the web server's;
    the CLI passes none and may use any file."""
    from core.methods import METHODS

    model_problems, notes, folder = _model_problems(spec, policy)
    if not model_problems:
        model_problems += _template_problems(spec)
    data_problems, reports = _data_problems(spec, policy)
    problems = model_problems + data_problems + _device_problems(spec)
    if not data_problems:
        problems += _eval_split_problems(spec, reports)
        if folder is not None and not model_problems:
            problems += _max_length_problems(spec)
    problems += _init_adapter_problems(spec)
    reported = {key for key, _ in problems}
    problems += [p for p in METHODS[spec.method].check_launch(spec) if p[0] not in reported]
    if problems:
        raise SpecError(problems)
    notes += _space_notes(spec, sum(r.used_samples for r in reports), folder)
    spec.notes.extend(notes)
    return notes


def _model_problems(spec: JobSpec, policy=None) -> tuple[list[tuple[str, str]], list[str], Path | None]:
    """(problems, notes, the local folder or None for a hub id)."""
    from core.models.check import folder_problems
    from core.models.remote_code import refusal
    from core.models.source import ModelSourceError, resolve_model

    try:
        source = resolve_model(spec.model.path)
    except ModelSourceError as err:
        return [("model.path", str(err))], [], None
    not_here = policy.remote_code_refusal(spec.model.trust_remote_code) if policy is not None else None
    if not_here:
        return [("model.trust_remote_code", not_here)], [], None
    folder = Path(source) if Path(source).is_dir() else None  # None: a hub id, or the bundled model unconverted
    problems, notes = folder_problems(folder) if folder is not None else ([], [])
    if problems:
        return [("model.path", p) for p in problems], [], folder
    refused = refusal(source, spec.model.trust_remote_code)  # before anything loads: never a "[y/N]" prompt
    return ([("model.path", refused)] if refused else []), [f"model.path: {n}" for n in notes], folder


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


def _data_problems(spec: JobSpec, policy=None):
    """Read every dataset now, so bad data is refused before a run folder exists, naming each bad line."""
    from core.data.registry import DatasetError, read_registry
    from core.data.source import check_datasets

    if spec.data.registry:
        try:
            read_registry(spec.data.registry, policy)
        except DatasetError as err:  # every name would fail for this one reason: say it once, at its field
            return [("data.registry", str(err))], []
    reports = check_datasets(spec.data.dataset, spec.data.registry, policy=policy)
    return [("data.dataset", "\n".join(r.lines())) for r in reports if not r.usable], reports


def _eval_split_problems(spec: JobSpec, reports) -> list[tuple[str, str]]:
    from core.data.fit import eval_split_problem

    problem = eval_split_problem(sum(r.used_samples for r in reports), spec.data.eval_split, spec.data.max_samples)
    return [("data.eval_split", problem)] if problem else []


def _max_length_problems(spec: JobSpec) -> list[tuple[str, str]]:
    """Encode samples with the model's tokenizer until one keeps an answer token within max_length."""
    from core.data.fit import dataset_samples, max_length_problems
    from core.models.loading import load_tokenizer

    try:
        tokenizer = load_tokenizer(spec.model.path, spec.model.trust_remote_code)
    except Exception as err:  # transformers raises many kinds for a broken tokenizer file
        return [("model.path", f"the model's tokenizer cannot be loaded: {type(err).__name__}: {str(err)[:300]}")]
    return max_length_problems(dataset_samples(spec), tokenizer, spec.data.max_length, spec.data.train_on_prompt)


def _device_problems(spec: JobSpec) -> list[tuple[str, str]]:
    """The devices, processes and strategy the job asks for, against what this machine has; then the precision."""
    from core.runtime.device import pick_device
    from core.runtime.layout import launch_problems

    problems = launch_problems(spec)
    if problems:
        return problems
    problem = precision_problem(spec.runtime.precision, pick_device(spec.runtime.device))
    return [("runtime.precision", problem)] if problem else []


TOKENIZER_PATTERNS = ("tokenizer*", "vocab*", "merges*", "special_tokens_map*", "chat_template*", "*.model")


def _tokenizer_bytes(folder: Path | None) -> int:
    """The size of the tokenizer files, which the adapter and every checkpoint carry a copy of."""
    if folder is None:
        return 5_000_000  # a hub model: a typical tokenizer
    files = {p for pattern in TOKENIZER_PATTERNS for p in folder.glob(pattern) if p.is_file()}
    return sum(p.stat().st_size for p in files)


def _space_notes(spec: JobSpec, num_samples: int, folder: Path | None) -> list[str]:
    """A note when the run's adapter and checkpoints would not fit in the free space of the workspace."""
    from core.models.params import count_parameters
    from core.paths import default_workspace
    from core.runtime.disk import space_note
    from core.training.trainer import planned_steps

    try:
        trainable = count_parameters(spec)["trainable"]
    except Exception:  # a config the meta model cannot build: the trainer will say so; no estimate then
        return []
    weights, tokenizer = trainable * 4, _tokenizer_bytes(folder)  # fp32 values
    adapter = weights + tokenizer
    checkpoint = weights * 3 + tokenizer + 100_000  # weights, the optimiser's two moments, tokenizer, state files
    used = min(num_samples, spec.data.max_samples) if spec.data.max_samples else num_samples
    steps = planned_steps(max(used, 1), spec.train)
    saves = -(-steps // spec.train.save_steps) if spec.train.save_steps else 1  # a Stop saves one checkpoint
    what = f"adapter {adapter / 1e6:.1f} MB + {saves} checkpoint{'s' * (saves != 1)} of {checkpoint / 1e6:.1f} MB"
    note = space_note(default_workspace(), adapter + saves * checkpoint, what)
    return [note] if note else []
