"""tinylm_ref: the reference tiny decoder of the tinylm-harness project.

The names below load on first use (PEP 562), so importing one light submodule (``tinylm_ref.config``,
``tinylm_ref.generation``) does not import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "Checkpoint": "tinylm_ref.checkpoint",
    "CheckpointError": "tinylm_ref.checkpoint",
    "load_checkpoint": "tinylm_ref.checkpoint",
    "save_checkpoint": "tinylm_ref.checkpoint",
    "PRESETS": "tinylm_ref.config",
    "STUDY_PARAMS": "tinylm_ref.config",
    "ModelConfig": "tinylm_ref.config",
    "get_preset": "tinylm_ref.config",
    "LLM": "tinylm_ref.model",
    "KVCache": "tinylm_ref.model",
    "Generation": "tinylm_ref.generation",
    "generate": "tinylm_ref.sampling",
}

__all__ = [
    "LLM",
    "PRESETS",
    "STUDY_PARAMS",
    "Checkpoint",
    "CheckpointError",
    "Generation",
    "KVCache",
    "ModelConfig",
    "generate",
    "get_preset",
    "load_checkpoint",
    "package_version",
    "save_checkpoint",
]


DISTRIBUTION = "tinylm-harness"


def package_version() -> str:
    """The installed distribution's version: ``--version`` of both CLIs and the built-in plugins report it."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:  # imported from a source tree that was never installed
        return "0+unknown"


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'tinylm_ref' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})


if TYPE_CHECKING:
    from tinylm_ref.checkpoint import Checkpoint, CheckpointError, load_checkpoint, save_checkpoint
    from tinylm_ref.config import PRESETS, STUDY_PARAMS, ModelConfig, get_preset
    from tinylm_ref.generation import Generation
    from tinylm_ref.model import LLM, KVCache
    from tinylm_ref.sampling import generate
