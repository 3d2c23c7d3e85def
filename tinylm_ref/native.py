"""Build and load the fused decode step (``csrc/fused_step.c``) with the system C compiler, once per machine.

Why compile on the user's machine instead of shipping a wheel: the kernel is built with ``-march=native``
so the same source gets AVX2 FMA on one machine and AVX-512 on the next (issue 15: layouts tuned on one
CPU family did not carry over to the other), and the project stays a pure-Python package. The build takes
about a second (no torch headers: the library is plain C loaded through ``ctypes``) and is cached under
``$TINYLM_KERNEL_CACHE`` (default ``$XDG_CACHE_HOME/tinylm_ref/kernels``, else ``~/.cache/...``), keyed by
the source, the compiler, its flags and the CPU's model and flags, so a cache on a shared home directory
never hands one CPU another's instructions.

Without a C compiler, or with ``TINYLM_FUSED=0``, :func:`load_kernel` returns ``None`` with the reason in
:func:`unavailable_reason`, and decoding uses the eager ``FastDecoder`` (slower, same contract). A compiler
without OpenMP builds a single-threaded step (:func:`build_note` says so). Concurrent processes may build
at once: each writes a private temporary file and renames it into place.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

import torch  # noqa: F401  (loads torch's libgomp first, so the kernel's OpenMP resolves to the same runtime)

SOURCE = Path(__file__).resolve().parent / "csrc" / "fused_step.c"
ABI_VERSION = 3
DISABLE_ENV, CACHE_ENV, COMPILER_ENV = "TINYLM_FUSED", "TINYLM_KERNEL_CACHE", "CC"
FLAGS = ("-O3", "-march=native", "-fopenmp", "-shared", "-fPIC", "-std=gnu11")
#: A compiler without OpenMP (clang without libomp) still builds the step, single-threaded.
FLAGS_SERIAL = tuple(flag for flag in FLAGS if flag != "-fopenmp")
BUILD_TIMEOUT_S = 300  # a cold build takes about a second; a loaded machine may take far longer

_state: dict[str, object] = {}


def cpu_signature() -> str:
    """CPU model and ISA flags: what ``-march=native`` compiles for."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return platform.machine() + " " + platform.processor()
    fields = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key in ("model name", "flags", "Features", "CPU part") and key not in fields:
            fields[key] = value.strip()
    return platform.machine() + "|" + "|".join(f"{k}={v}" for k, v in sorted(fields.items()))


def find_compiler() -> str | None:
    """``$CC`` when set (an empty or missing one means no compiler), else cc, gcc or clang on PATH."""
    if COMPILER_ENV in os.environ:
        name = os.environ[COMPILER_ENV].strip()
        return shutil.which(name) if name else None
    for name in ("cc", "gcc", "clang"):
        path = shutil.which(name)
        if path:
            return path
    return None


def _compiler_version(compiler: str) -> str:
    result = subprocess.run([compiler, "--version"], capture_output=True, text=True, timeout=60, check=False)
    return result.stdout.strip().splitlines()[0] if result.stdout.strip() else compiler


def cache_dir() -> Path:
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "tinylm_ref" / "kernels"


def _build(compiler: str, flags: tuple[str, ...], target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=target.stem + ".", suffix=".tmp.so", dir=target.parent)
    os.close(fd)
    try:
        result = subprocess.run(
            [compiler, *flags, "-o", tmp, str(SOURCE), "-lm"],
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT_S,
            check=False,
        )
        if result.returncode != 0:
            message = (result.stderr or result.stdout).strip().splitlines()
            raise RuntimeError(f"{Path(compiler).name} failed: {message[0] if message else result.returncode}")
        os.replace(tmp, target)  # atomic: a concurrent loader sees the old file, the new one, or none
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _load() -> ctypes.CDLL:
    if os.environ.get(DISABLE_ENV, "").strip().lower() in ("0", "false", "no", "off"):
        raise RuntimeError(f"disabled by {DISABLE_ENV}={os.environ[DISABLE_ENV]}")
    compiler = find_compiler()
    if compiler is None:
        raise RuntimeError("no C compiler found (install gcc or clang, or set CC)")
    source, version, cpu = SOURCE.read_bytes(), _compiler_version(compiler).encode(), cpu_signature().encode()

    def target_for(flags: tuple[str, ...]) -> Path:
        key = hashlib.sha256(b"\0".join([source, version, " ".join(flags).encode(), cpu])).hexdigest()[:20]
        return cache_dir() / f"fused_step-{key}.so"

    target, serial = target_for(FLAGS), target_for(FLAGS_SERIAL)
    if not target.exists() and serial.exists():
        target = serial  # this compiler was found to lack OpenMP before
    elif not target.exists():
        try:
            _build(compiler, FLAGS, target)
        except RuntimeError as exc:
            _build(compiler, FLAGS_SERIAL, serial)  # raises, with the compiler's message, if this fails too
            target, _state["note"] = serial, f"built without OpenMP, one thread ({exc})"
    if target == serial and "note" not in _state:
        _state["note"] = "built without OpenMP, one thread"
    library = ctypes.CDLL(str(target))
    if library.tl_abi_version() != ABI_VERSION:
        raise RuntimeError(f"{target} has ABI {library.tl_abi_version()}, expected {ABI_VERSION}; delete it")
    return library


def load_kernel() -> ctypes.CDLL | None:
    """The fused-step library, built on first use; ``None`` (see :func:`unavailable_reason`) if it cannot be."""
    if "library" not in _state:
        try:
            _state["library"], _state["reason"] = _load(), None
        except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
            _state["library"], _state["reason"] = None, str(exc)
    return _state["library"]  # type: ignore[return-value]


def build_note() -> str | None:
    """A caveat about the loaded kernel (built without OpenMP, so single-threaded), else ``None``."""
    return _state.get("note")  # type: ignore[return-value]


def unavailable_reason() -> str | None:
    """Why :func:`load_kernel` returned ``None`` (``None`` when it did not, or was not yet called)."""
    return _state.get("reason")  # type: ignore[return-value]


def reset() -> None:
    """Forget the loaded library and any failure, so the next :func:`load_kernel` tries again (tests)."""
    _state.clear()
