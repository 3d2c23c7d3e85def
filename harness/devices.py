"""Device names from the CLI or a suite, resolved once for every backend.

A device that is spelled right but absent (``mps`` on Linux, ``cuda:3`` on a one-GPU machine) is a user
error too: torch would only fail later, mid-load, as a crash. So presence is checked here, and the error
lists the devices that exist.
"""

from __future__ import annotations

import re

import torch

from harness.errors import UserError

DEVICE_PATTERN = r"^(auto|cpu|cuda(:\d+)?|mps)$"


def available_devices() -> list[str]:
    """Every device name that works on this machine, ``auto`` first."""
    names = ["auto", "cpu"]
    if torch.cuda.is_available():
        names += ["cuda", *(f"cuda:{i}" for i in range(torch.cuda.device_count()))]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        names.append("mps")
    return names


def resolve_device(name: str, spec: str | None = None) -> torch.device:
    """``auto`` picks CUDA when available; anything unusable is a one-line error naming the model."""
    who = f"model {spec}: " if spec else ""
    present = available_devices()
    if not isinstance(name, str) or not re.match(DEVICE_PATTERN, name):
        raise UserError(f"{who}--device {name!r} is not a device; use one of {', '.join(present)}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in present:
        raise UserError(f"{who}--device {name}: not present on this machine; available: {', '.join(present)}")
    return torch.device(name)
