"""Where things live on disk: the project, the workspace, the converted-model cache."""
from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = PROJECT_ROOT / "data"
PRESETS_DIR = PROJECT_ROOT / "presets"
# The design, peer data and peer benchmark beside the checkout; absent in a plain clone (tests skip).
SHARED_DIR = PROJECT_ROOT.parent / "shared"


WORKSPACE_ENV = "LORA_WORKBENCH_WORKSPACE"
MODELS_ENV = "LORA_WORKBENCH_MODELS"


def default_workspace() -> Path:
    """Runs, uploads, exports, logs and converted models go here. `app.py --workspace DIR` sets
    LORA_WORKBENCH_WORKSPACE for itself and every process it starts, so they all agree."""
    return Path(os.environ.get(WORKSPACE_ENV, PROJECT_ROOT / "workspace")).resolve()


def models_dir() -> Path:
    """Where models are converted to: the workspace's models/ folder, unless LORA_WORKBENCH_MODELS names another."""
    shared = os.environ.get(MODELS_ENV)
    return Path(shared).resolve() if shared else default_workspace() / "models"
