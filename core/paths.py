"""Where things live on disk: the project, the workspace, the converted-model cache."""
from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = PROJECT_ROOT / "data"
PRESETS_DIR = PROJECT_ROOT / "presets"
# The design, peer data and peer benchmark beside the checkout; absent in a plain clone (tests skip).
SHARED_DIR = PROJECT_ROOT.parent / "shared"


def default_workspace() -> Path:
    """Runs and uploads go here unless --workspace or LORA_WORKBENCH_WORKSPACE says otherwise."""
    return Path(os.environ.get("LORA_WORKBENCH_WORKSPACE", PROJECT_ROOT / "workspace")).resolve()


def models_dir() -> Path:
    """Converted models are shared by every workspace, so a test's fresh workspace does not convert again."""
    return Path(os.environ.get("LORA_WORKBENCH_MODELS", PROJECT_ROOT / "workspace" / "models")).resolve()
