"""What a run records about the machine and software, so a number can be reproduced or explained."""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

PACKAGES = (
    "tinylm-harness",
    "torch",
    "tokenizers",
    "transformers",
    "huggingface-hub",
    "safetensors",
    "pluggy",
    "numpy",
    "pandas",
    "scipy",
    "plotly",
    "typer",
    "pydantic",
)


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = None
    return versions


#: The ISA extensions that decide which kernels oneDNN and the fused decode step use; a speed figure is only
#: comparable between machines that share them.
ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile", "amx_bf16", "amx_int8")


def cpu_isa() -> list[str]:
    """Which of :data:`ISA_FLAGS` this CPU reports (empty off Linux or off x86)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                return [f for f in ISA_FLAGS if f in flags]
    except OSError:
        pass
    return []


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_commit(start: Path | None = None) -> dict[str, Any]:
    """Commit of the code that ran (the package's checkout, else the working directory's), and dirtiness."""
    for where in (Path(__file__).resolve().parent, start or Path.cwd()):
        try:
            commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=5)
            if commit.returncode == 0:
                dirty = subprocess.run(
                    ["git", "status", "--porcelain", "--untracked-files=no"],
                    cwd=where,
                    capture_output=True,
                    text=True,
                    timeout=5,
                )
                return {"commit": commit.stdout.strip(), "dirty": bool(dirty.stdout.strip())}
        except (OSError, subprocess.SubprocessError):
            continue
    return {"commit": None, "dirty": None}


def describe_environment(device: str) -> dict[str, Any]:
    import torch  # not at import time: the benchmarks read the CPU description before torch starts

    gpu = torch.cuda.get_device_name(0) if device.startswith("cuda") and torch.cuda.is_available() else None
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu": cpu_name(),
        "cpu_isa": cpu_isa(),
        "cpu_count": os.cpu_count(),
        "gpu": gpu,
        "device": device,
        "threads": torch.get_num_threads(),
        "packages": package_versions(),
        "git": git_commit(),
    }


def reset_peak_rss() -> None:
    """Reset the kernel's peak-RSS counter (Linux), so each model's peak is its own."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def peak_rss_mb() -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None
