"""Model configuration and the four presets of the study (its Table 1)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path


@dataclass(frozen=True)
class ModelConfig:
    """Architecture hyper-parameters, with the field names the study's code uses.

    The defaults are the study's 10M model so that ``LLM(ModelConfig())`` builds
    the same network as the blog post's serving snippet.
    """

    vocab_size: int = 2000
    dim: int = 384
    n_layers: int = 4
    n_heads: int = 4
    ffn_dim: int = 1536
    max_seq_len: int = 256
    tie_weights: bool = True
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if self.dim % self.n_heads:
            raise ValueError(f"dim={self.dim} is not divisible by n_heads={self.n_heads}")
        for name in ("vocab_size", "dim", "n_layers", "n_heads", "ffn_dim", "max_seq_len"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ModelConfig:
        """Build from a dict, rejecting unknown keys so typos in config.json surface."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown config field(s) {unknown}; expected some of {sorted(known)}")
        return cls(**data)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> ModelConfig:
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))


def _preset(vocab: int, dim: int, layers: int) -> ModelConfig:
    return ModelConfig(vocab_size=vocab, dim=dim, n_layers=layers, n_heads=4, ffn_dim=4 * dim, max_seq_len=256)


#: The study's Table 1. All four use context 256: the table states it for every size, while the
#: prose says 128 for 2.5M; we follow the table because it is the configuration the published
#: parameter count (2.5M) was computed from, and because the suite asks for up to 256 new tokens.
PRESETS: dict[str, ModelConfig] = {
    "10m": _preset(2000, 384, 4),
    "7m": _preset(1500, 224, 8),
    "5m": _preset(1000, 384, 2),
    "2.5m": _preset(512, 272, 2),
}

#: Parameter counts the study reports in Table 1, for side-by-side display and tests.
STUDY_PARAMS: dict[str, float] = {"10m": 10.7e6, "7m": 6.9e6, "5m": 5.0e6, "2.5m": 2.5e6}


def get_preset(name: str) -> ModelConfig:
    key = name.lower()
    if key not in PRESETS:
        raise KeyError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[key]
