"""What the Chat tab can talk to, and what Send answers with.

A target is a usable run (its base with the adapter, newest first) or the bundled base model alone.
Its `key` ("run:/path" or "base:NAME") is what a picker holds.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from core.runs.views import usable_runs
from core.spec import BUNDLED_MODEL


@dataclass(frozen=True)
class ChatTarget:
    kind: str  # "run" or "base"
    where: str  # the run folder, or the base model

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.where}"

    @property
    def name(self) -> str:
        return Path(self.where).name if self.kind == "run" else self.where

    @classmethod
    def parse(cls, key: str | None) -> ChatTarget | None:
        kind, _, where = (key or "").partition(":")
        return cls(kind, where) if kind in ("run", "base") and where else None

    def load_args(self) -> dict:
        return {"run": self.where} if self.kind == "run" else {"base": self.where}

    def matches(self, loaded: dict | None) -> bool:
        """Whether `loaded` (a ChatClient's `loaded`) is this target."""
        return bool(loaded) and loaded.get(self.kind) == self.where


def chat_targets(workspace: Path) -> list[ChatTarget]:
    return [ChatTarget("run", str(run.path)) for run in usable_runs(workspace)] + [ChatTarget("base", BUNDLED_MODEL)]


class TargetRefused(ValueError):
    """A target the Chat tab does not offer, or one the server's policy forbids; the message says which."""


def offered_target(key: str | None, workspace: Path, policy=None) -> ChatTarget | None:
    """The target `key` names, if the Chat tab offers it: a usable run of `workspace` or the bundled model. A page
    or an API call cannot make the server load any other folder. None when nothing is picked. With the server's
    `policy`, a run whose job allowed its model folder's code needs the operator's leave too."""
    target = ChatTarget.parse(key)
    if not key:
        return None
    if target is None or target not in chat_targets(workspace):
        raise TargetRefused(f"{str(key)[:200]!r} is not a finished run of this workspace or the bundled model")
    if target.kind == "run" and policy is not None:
        from core.spec import SpecError, load_spec

        try:
            trust = load_spec(str(Path(target.where) / "job.yaml")).model.trust_remote_code
        except SpecError as err:
            raise TargetRefused(f"run {target.name}: {err}") from None
        refused = policy.remote_code_refusal(trust)
        if refused:
            raise TargetRefused(f"run {target.name} sets model.trust_remote_code: {refused}")
    return target


def answering_model(client, picked: ChatTarget | None) -> tuple[dict, bool]:
    """(what answers, whether it was loaded just now). A loaded model answers; when none is loaded, Send
    loads the picked target first rather than refusing. Raises ChatWorkerError when loading fails."""
    from core.chat.client import ChatWorkerError

    if client.loaded:
        return client.loaded, False
    if picked is None:
        raise ChatWorkerError("nothing is picked to load")
    return client.load(**picked.load_args()), True
