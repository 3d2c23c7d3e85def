"""tinylm_ref: the reference tiny decoder of the tinylm-harness project."""

from tinylm_ref.checkpoint import Checkpoint, CheckpointError, load_checkpoint, save_checkpoint
from tinylm_ref.config import PRESETS, SEED_PARAMS, ModelConfig, get_preset
from tinylm_ref.model import LLM, KVCache
from tinylm_ref.sampling import Generation, generate

__all__ = [
    "LLM",
    "PRESETS",
    "SEED_PARAMS",
    "Checkpoint",
    "CheckpointError",
    "Generation",
    "KVCache",
    "ModelConfig",
    "generate",
    "get_preset",
    "load_checkpoint",
    "save_checkpoint",
]
