"""Checking a GGUF file before llama.cpp sees it, and probing llama.cpp in a child process.

Two defences, both in one line for the user:

* ``inspect_gguf`` reads the header and tensor table with the ``gguf`` package (pure Python, no code from
  the file is ever run): a file that is not GGUF, is truncated (a tensor ends past the end of the file), or
  names an architecture that llama.cpp's own tables do not know is refused here, naming the file and what is
  wrong. It also counts the tensor types, so a "Q8_0" file that holds mostly F16 is labelled as it is.
* ``probe`` runs a batched prefill and a decode step in a *child* process (``python -m
  harness.backends.gguf_probe``). A llama.cpp kernel that dies of an illegal instruction (seen with ggml's
  AMX code on Q8_0 batched prefill) or a segfault kills only the child: the backend then falls back to
  token-by-token prefill, or refuses the model in one line, instead of taking the whole run down. A signal
  cannot be caught in-process in any way that leaves llama.cpp usable, so a child is the only real guard.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import UserError

MAGIC = b"GGUF"
PROBE_TIMEOUT_S = 600  # a tiny prefill takes milliseconds; this only stops a hung llama.cpp from hanging the run


@dataclass
class GGUFSummary:
    architecture: str
    tensor_types: dict[str, int]  # e.g. {"F32": 19, "Q8_0": 7}
    n_tensors: int
    context_length: int | None
    name: str | None


def _field(reader: Any, key: str) -> Any:
    field = reader.fields.get(key)
    if field is None or not field.data:
        return None
    value = field.parts[field.data[0]]
    if field.types and field.types[0].name == "STRING":
        return bytes(value).decode("utf-8", errors="replace")
    return value.tolist()[0] if hasattr(value, "tolist") else value


def inspect_gguf(path: Path, spec: str) -> GGUFSummary:
    """The file's architecture and tensor types; one UserError naming ``path`` for anything unreadable."""
    try:
        import gguf
    except ImportError as exc:
        raise UserError(
            f"model {spec}: reading GGUF files needs the gguf package ({exc}); pip install 'tinylm-harness[gguf]'"
        ) from None
    size = path.stat().st_size
    with open(path, "rb") as handle:
        head = handle.read(4)
    if head != MAGIC:
        raise UserError(f"model {spec}: {path} is not a GGUF file (it starts with {head!r}, not b'GGUF')")
    try:
        reader = gguf.GGUFReader(str(path), "r")
    except Exception as exc:  # the reader raises ValueError, IndexError, struct errors... on a damaged file
        detail = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else exc.__class__.__name__
        raise UserError(
            f"model {spec}: {path} is a damaged or truncated GGUF file ({detail}); re-download it"
        ) from None
    tensors = list(reader.tensors)
    if not tensors:
        raise UserError(f"model {spec}: {path} holds no tensors; it is not a model (re-download or re-convert it)")
    end = max(int(t.data_offset) + int(t.n_bytes) for t in tensors)
    if end > size:
        raise UserError(
            f"model {spec}: {path} is truncated: its tensors need {end:,} bytes, the file has {size:,}; re-download it"
        )
    arch = _field(reader, "general.architecture")
    if not isinstance(arch, str):
        raise UserError(f"model {spec}: {path} has no general.architecture; it is not a llama.cpp model file")
    known = set(gguf.MODEL_ARCH_NAMES.values())
    if arch not in known:
        raise UserError(
            f"model {spec}: {path} is of architecture {arch!r}, which llama.cpp does not support "
            f"(gguf {getattr(gguf, '__version__', '')} knows {len(known)} architectures); convert a supported model"
        )
    types = Counter(t.tensor_type.name for t in tensors)
    return GGUFSummary(
        architecture=arch,
        tensor_types=dict(sorted(types.items())),
        n_tensors=len(tensors),
        context_length=_field(reader, f"{arch}.context_length"),
        name=_field(reader, "general.name"),
    )


def label(summary: GGUFSummary) -> str:
    """What the file holds, by its tensors: ``F32``, ``Q8_0 (7 tensors) + F32 (19)``..."""
    if len(summary.tensor_types) == 1:
        return next(iter(summary.tensor_types))
    ordered = sorted(summary.tensor_types.items(), key=lambda kv: -kv[1])
    return " + ".join(f"{name} ({count})" for name, count in ordered)


@dataclass
class ProbeResult:
    ok: bool
    signal_name: str | None
    detail: str


def probe(path: Path, n_ctx: int, n_batch: int, threads: int | None, kv_type: int, tokens: int) -> ProbeResult:
    """Load ``path`` in a child and run a ``tokens``-token prefill in batches of ``n_batch`` plus one decode step."""
    args = [sys.executable, "-m", "harness.backends.gguf_probe", str(path), str(n_ctx), str(n_batch)]
    args += [str(threads or 0), str(kv_type), str(tokens)]
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=PROBE_TIMEOUT_S, env=os.environ.copy())
    except subprocess.TimeoutExpired:
        return ProbeResult(False, None, f"the probe did not finish in {PROBE_TIMEOUT_S} s")
    if done.returncode == 0:
        return ProbeResult(True, None, "")
    if done.returncode < 0:
        try:
            name = signal.Signals(-done.returncode).name
        except ValueError:
            name = f"signal {-done.returncode}"
        return ProbeResult(False, name, f"llama.cpp was killed by {name}")
    lines = [line for line in (done.stderr or "").strip().splitlines() if line.strip()]
    return ProbeResult(False, None, lines[-1][:300] if lines else f"exit status {done.returncode}")
