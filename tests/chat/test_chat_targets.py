"""The Chat tab loads only what its picker offers: a finished run of its workspace or the bundled model. A key
forged by a page or an API call ("run:/anywhere", "base:/some/folder") is refused before any process starts."""
from __future__ import annotations

import pytest

from core.chat.targets import ChatTarget, TargetRefused, offered_target
from core.spec import BUNDLED_MODEL


def test_only_offered_targets_load(tmp_path, tiny_model_dir):
    workspace = tmp_path / "ws"
    assert offered_target(None, workspace) is None and offered_target("", workspace) is None
    assert offered_target(f"base:{BUNDLED_MODEL}", workspace) == ChatTarget("base", BUNDLED_MODEL)
    elsewhere = tmp_path / "elsewhere" / "run"
    elsewhere.mkdir(parents=True)
    for forged in (f"run:{elsewhere}", f"base:{tiny_model_dir}", "base:/etc", "run:../../etc", "nonsense",
                   f"run:{workspace / 'runs' / 'missing'}"):
        with pytest.raises(TargetRefused, match="not a finished run of this workspace or the bundled model"):
            offered_target(forged, workspace)


def test_at_most_a_few_chat_models_are_loaded_at_once():
    from core.chat.client import MAX_WORKERS, ChatWorkerError, check_capacity

    class Worker:
        def __init__(self, alive):
            self.is_alive = alive

        def alive(self):
            return self.is_alive

    others = [Worker(True) for _ in range(MAX_WORKERS - 1)] + [Worker(False)]
    me = Worker(False)
    check_capacity([*others, me], me)  # one place left
    others.append(Worker(True))
    with pytest.raises(ChatWorkerError, match=f"at most {MAX_WORKERS} are kept at once"):
        check_capacity([*others, me], me)
    check_capacity([*others, me], others[0])  # a page that already holds one may reload it
