"""Peak memory of a model's run: host RSS high-water mark on CPU, allocator peak on CUDA.

Design: the *runner* owns the measurement window, the metric reports it.

- Preferred: the runner calls :func:`reset_peak_memory` before loading a model and
  :func:`peak_memory_mb` after its last sample, and passes the number as
  ``ModelContext.resources["peak_mem_mb"]``; the metric returns it unchanged (``None`` stays
  missing). Backends that run the model out of process (a server) can put their own number there.
- Fallback, when that resource is absent: the metric reads the counters itself and then resets
  them, so the next model in the same process starts afresh. Without any reset before the first
  model, its value is the process peak since start (which includes loading it, as intended).

What is measured (``MB`` means MiB, 2**20 bytes, as torch and nvidia-smi report):

- CPU: the process's peak resident set (``VmHWM`` in ``/proc/self/status``, reset by writing 5
  to ``/proc/self/clear_refs``; ``ru_maxrss`` where there is no ``/proc``, which cannot be reset).
  It includes the Python interpreter and torch (a few hundred MB), so differences between models
  matter more than the absolute number.
- CUDA: ``torch.cuda.max_memory_allocated`` (tensors only, not the CUDA context or allocator cache),
  reset with ``torch.cuda.reset_peak_memory_stats``.
- Other devices (e.g. ``mps``): missing, rather than a host number that would look like device memory.

``kind`` is ``"timing"``: like TTFT, the number depends on the machine and the software stack, and
its replicate is the run (one value per model per run), which is how gates treat timing metrics.
"""

from __future__ import annotations

import re
import resource
import sys
from collections.abc import Callable
from pathlib import Path

from harness.hookspecs import hookimpl
from harness.types import Metric, ModelContext

RESOURCE = "peak_mem_mb"
BYTES_PER_MB = 2**20
_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")
_VM_HWM = re.compile(r"^VmHWM:\s*(\d+)\s*kB", re.MULTILINE)


def device_kind(device: str) -> str:
    """``"cuda"``, ``"cpu"`` or ``"other"`` for a device string such as ``"cuda:1"``."""
    kind = device.split(":", 1)[0].strip().lower()
    return kind if kind in ("cuda", "cpu") else "other"


def parse_vm_hwm_kib(status_text: str) -> int | None:
    """The ``VmHWM`` (peak RSS) line of ``/proc/<pid>/status``, in KiB; ``None`` if absent."""
    match = _VM_HWM.search(status_text)
    return int(match.group(1)) if match else None


def ru_maxrss_mb(ru_maxrss: int, platform: str = sys.platform) -> float:
    """``getrusage().ru_maxrss`` in MiB: the kernel reports KiB on Linux but bytes on macOS."""
    return ru_maxrss / BYTES_PER_MB if platform == "darwin" else ru_maxrss / 1024


def host_peak_mb() -> float:
    """Peak RSS of this process since start or the last reset, in MiB."""
    try:
        kib = parse_vm_hwm_kib(_STATUS.read_text(encoding="utf-8"))
    except OSError:
        kib = None
    if kib is not None:
        return kib / 1024
    return ru_maxrss_mb(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def peak_memory_mb(device: str) -> float | None:
    """Peak memory for ``device`` since the last :func:`reset_peak_memory` (or process start)."""
    kind = device_kind(device)
    if kind == "cpu":
        return host_peak_mb()
    if kind == "cuda":
        import torch

        return torch.cuda.max_memory_allocated(device) / BYTES_PER_MB
    return None


def reset_peak_memory(device: str) -> bool:
    """Start a new measurement window; ``False`` where the peak cannot be reset (no ``/proc``)."""
    kind = device_kind(device)
    if kind == "cuda":
        import torch

        torch.cuda.reset_peak_memory_stats(device)
        return True
    if kind == "cpu":
        try:
            _CLEAR_REFS.write_text("5", encoding="ascii")  # 5 = reset the peak RSS (Linux >= 4.0)
        except OSError:
            return False
        return True
    return False


def _peak_mem_mb(ctx: ModelContext) -> float | None:
    if RESOURCE in ctx.resources:
        value = ctx.resources[RESOURCE]
        return None if value is None else float(value)
    device = ctx.model.info.device
    value = peak_memory_mb(device)
    reset_peak_memory(device)
    return value


PEAK_MEM_MB = Metric(
    name="peak_mem_mb",
    unit="MB",
    higher_is_better=False,
    kind="timing",
    compute_model=_peak_mem_mb,
    description="Peak memory during the model's run: process peak RSS on CPU, "
    "torch.cuda.max_memory_allocated on CUDA (MiB).",
)

METRICS: tuple[Metric, ...] = (PEAK_MEM_MB,)


@hookimpl
def register_metrics(register: Callable[[Metric], None]) -> None:
    for metric in METRICS:
        register(metric)
