"""The checkpoints shipped inside the package (the study's four presets), by name.

Why here and not only in the harness: ``tinylm sample 2.5m`` and ``harness run --models 2.5m`` must mean
the same weights; both resolve names through this module.
"""

from __future__ import annotations

from pathlib import Path

BUNDLED_DIR = Path(__file__).resolve().parent / "checkpoints"


def bundled_checkpoints() -> dict[str, Path]:
    """Preset name -> checkpoint directory of every bundled checkpoint that is present."""
    if not BUNDLED_DIR.is_dir():
        return {}
    return {p.name: p for p in sorted(BUNDLED_DIR.iterdir()) if (p / "config.json").is_file()}


def resolve_checkpoint(argument: str | Path) -> Path:
    """An existing path as given; else the bundled checkpoint of that name (``10m``, ``2.5m``...);
    else the path unchanged, so the loader names what is missing."""
    path = Path(argument)
    if path.exists():
        return path
    return bundled_checkpoints().get(str(argument).lower(), path)
