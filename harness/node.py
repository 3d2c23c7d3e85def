"""Which machine made a sample, and whether one model's timing samples come from different hardware.

Why per sample: a run filled by a cluster (``--executor ray``), or resumed on another machine, can hold
one model's samples from several kinds of hardware. A tokens-per-second mean over a Xeon and a laptop
is a number about neither, so every sample records its node (host, CPU model, GPU) and the readers
(summary, terminal table, report, gate) warn about a model whose timing mixes kinds of hardware, the
way they warn about timing taken on a busy CPU (:mod:`harness.contention`). The host name alone is
not a kind of hardware: identical nodes of a cluster are one kind.
"""

from __future__ import annotations

import functools
import socket
from typing import Any

MIXED_FLAG = "mixed hardware"


@functools.lru_cache(maxsize=8)
def _identity(device_kind: str) -> tuple[tuple[str, str | None], ...]:
    from harness.environment import cpu_name

    gpu = None
    if device_kind == "cuda":
        import torch

        gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return (("host", socket.gethostname()), ("cpu", cpu_name()), ("gpu", gpu))


def node_identity(device: str) -> dict[str, str | None]:
    """``{"host", "cpu", "gpu"}`` of this process's machine (``gpu`` only when ``device`` is CUDA)."""
    return dict(_identity("cuda" if str(device).startswith("cuda") else "cpu"))


def hardware_kind(node: dict[str, Any]) -> str:
    """A label for the kind of hardware (CPU model, plus the GPU when there is one); the host is left out."""
    cpu, gpu = node.get("cpu") or "unknown CPU", node.get("gpu")
    return f"{cpu} + {gpu}" if gpu else str(cpu)


def hardware_flags(samples: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
    """Models whose samples ran on more than one kind of hardware: ``{model: {"flag", "reason"}}``.

    Samples without a ``node`` field (runs made before it existed) are not counted.
    """
    kinds: dict[str, dict[str, int]] = {}
    for record in samples:
        node = record.get("node")
        if isinstance(node, dict):
            per_model = kinds.setdefault(record["model"], {})
            kind = hardware_kind(node)
            per_model[kind] = per_model.get(kind, 0) + 1
    flags = {}
    for model, counts in kinds.items():
        if len(counts) > 1:
            parts = "; ".join(f"{kind} ({n} samples)" for kind, n in sorted(counts.items()))
            flags[model] = {
                "flag": MIXED_FLAG,
                "reason": f"timing samples from {len(counts)} kinds of hardware: {parts}",
            }
    return flags
