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
