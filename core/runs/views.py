"""What the pages show of a workspace's runs: which runs chat and export can use and which one a picker
offers, which run the Train tab watches, and what that run gained since the last look.

Rules only; webui/ draws what these return.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from core.models.adapter import unusable_reason
from core.runs.folder import ACTIVE_STATES, FINAL_STATES, RunFolder, active_run, list_runs


def usable_runs(workspace: Path) -> list[RunFolder]:
    """Runs with an adapter to chat with or export (completed or stopped), newest first."""
    return [run for run in list_runs(workspace) if unusable_reason(run) is None]


def pick_run(current: str | None, seen_newest: str | None, usable: list[str]) -> str | None:
    """The run a picker shows after its list was refreshed (`usable` newest first).

    A run that became usable since the picker last looked (one that just finished) is offered first;
    otherwise the user's own pick stays while it is still usable; otherwise the newest.
    """
    if not usable:
        return None
    if usable[0] != seen_newest:
        return usable[0]
    return current if current in usable else usable[0]


@dataclass
class RunWatch:
    """What a watcher (the Train tab of one page) has read of one run so far."""

    run: str | None = None      # the run folder watched, None before there is one
    offset: int = 0             # bytes of metrics.jsonl already read
    records: list[dict] = field(default_factory=list)
    state: str | None = None    # the state seen at the last look
    step: int | None = None
    attempts: int = 0           # attempts seen: a resume starts a new one and rewrites metrics.jsonl

    @property
    def folder(self) -> RunFolder | None:
        return RunFolder(Path(self.run)) if self.run else None

    @classmethod
    def of(cls, run: RunFolder | None) -> RunWatch:
        return cls(run=str(run.path)) if run is not None else cls()

    @classmethod
    def on_open(cls, workspace: Path) -> RunWatch:
        """A page that opens shows the active run, or else the newest one, so a reload re-attaches."""
        return cls.of(active_run(workspace) or next(iter(list_runs(workspace)), None))

    def follow(self, workspace: Path) -> RunWatch:
        """A run that started elsewhere (another page, the CLI) takes over once the watched one is no longer
        active; a watched run that is still going is never switched away from."""
        if self.run is not None and self.state in ACTIVE_STATES:
            return self
        live = active_run(workspace)
        if live is not None and str(live.path) != self.run:
            return RunWatch.of(live)
        return self

    def look(self) -> Look:
        """Read what the run folder gained since the last look. When the run was resumed since (its metrics
        were cut back to the checkpoint's step), everything is read again from the start."""
        run = self.folder
        status = run.status()
        attempts = len(status.get("attempts") or [])
        current = self
        if attempts != self.attempts or metrics_size(run) < self.offset:
            current = replace(self, offset=0, records=[], attempts=attempts)
        new, offset = run.read_metrics(current.offset)
        after = replace(current, offset=offset, records=current.records + new, state=status["state"],
                        step=status.get("step"))
        return Look(watch=after, status=status, new=new,
                    moved=bool(new) or status["state"] != self.state or status.get("step") != self.step,
                    ended=self.state in ACTIVE_STATES and status["state"] in FINAL_STATES)


def metrics_size(run: RunFolder) -> int:
    try:
        return run.metrics_file.stat().st_size
    except FileNotFoundError:
        return 0


def resume_marks(status: dict) -> list[int]:
    """The steps at which later attempts took over (charts mark them on one continuous curve)."""
    return [a.get("from_step") or 0 for a in (status.get("attempts") or [])[1:]]


@dataclass
class RunActions:
    """What a run offers now: the buttons of the Runs tab and the commands that work on it."""

    stop: bool      # ask it to stop after the current step
    kill: bool      # end its process group now
    resume: bool    # continue it from its last checkpoint
    extend: bool    # train its adapter further as a new run
    delete: bool

    @classmethod
    def of(cls, run: RunFolder, status: dict) -> RunActions:
        from core.runs.resume import why_not_resumable

        active = status["state"] in ACTIVE_STATES
        return cls(stop=active, kill=active, resume=why_not_resumable(run, status) is None,
                   extend=not active and (run.adapter_dir / "adapter_config.json").is_file(), delete=not active)


@dataclass
class Look:
    watch: RunWatch       # the watch after this look
    status: dict          # the run's status now
    new: list[dict]       # metrics records that arrived since the last look
    moved: bool           # anything shown changed: new records, state or step
    ended: bool           # the run went from active to final during this look
