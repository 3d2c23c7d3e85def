"""Device names from the CLI or a suite, resolved once for every backend."""

from __future__ import annotations

import re

import torch

from harness.errors import UserError

DEVICE_PATTERN = r"^(auto|cpu|cuda(:\d+)?|mps)$"


def resolve_device(name: str, spec: str | None = None) -> torch.device:
    """``auto`` picks CUDA when available; anything unusable is a one-line error naming the model."""
    who = f"model {spec}: " if spec else ""
    if not re.match(DEVICE_PATTERN, name):
        raise UserError(f"{who}--device {name!r} is not a device; use auto, cpu, cuda or cuda:N")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"{who}--device {name} but CUDA is not available here; use --device cpu or auto")
    return torch.device(name)
