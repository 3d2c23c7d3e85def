"""Native-runtime rows for ``decode_speed.py``: ONNX Runtime and llama.cpp, through the harness's own backends.

Each row times ``Model.generate`` exactly as ``SuiteRun`` calls it (EOS switched off, the harness sampler on
the runtime's logits), so it measures what a harness run on that runtime would see:

  (5)  onnx          the preset's random-weight tinylm model exported with ``tinylm_ref.onnx_export`` (one
                     graph, KV cache in and out), run by the ``onnx`` backend on ONNX Runtime's CPU provider
  (6)  llama.cpp f32 the HF-equivalent Llama shape (the (3) model's weights) written to GGUF F32, run by the
                     ``gguf`` backend (llama.cpp, f32 KV cache)
  (6b) llama.cpp q8  the same weights in GGUF Q8_0 (matrices whose rows are not a multiple of 32 wide stay
                     F16: the label printed says what the file holds)

Rows whose runtime is not installed are skipped with a note (``pip install -e '.[onnx,gguf]'``).
"""

from __future__ import annotations

import importlib.util
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import _speed
import torch

from harness.types import LoadOptions

METHODS = ("onnx", "llamacpp_f32", "llamacpp_q8_0")
LABELS = {
    "onnx": "(5) ONNX Runtime, exported",
    "llamacpp_f32": "(6) llama.cpp GGUF F32",
    "llamacpp_q8_0": "(6b) llama.cpp GGUF Q8_0",
}
_WORKDIR: list[tempfile.TemporaryDirectory] = []  # kept alive until the process ends; the files are small


def available() -> dict[str, bool]:
    return {
        "onnx": all(importlib.util.find_spec(m) is not None for m in ("onnxruntime", "onnx")),
        "gguf": all(importlib.util.find_spec(m) is not None for m in ("llama_cpp", "gguf")),
    }


def _run_model(model: Any) -> Callable[[list[int], int, int], _speed.Timing]:
    model.stop_ids = frozenset()  # EOS ignored, as in every other row
    model.eos_id = None
    return lambda prompt_ids, n, seed: _speed.run_reference(model, prompt_ids, n, seed)


def native_runs(
    preset: str, reference: Any, hf_model: torch.nn.Module, threads: int | None
) -> tuple[dict[str, Callable[[list[int], int, int], _speed.Timing]], dict[str, str]]:
    """(method -> run(prompt_ids, n, seed), method -> what the file holds) for the runtimes installed here."""
    have = available()
    workdir = tempfile.TemporaryDirectory(prefix=f"decode-speed-{preset}-")
    _WORKDIR.append(workdir)
    root = Path(workdir.name)
    options = LoadOptions(device="cpu", threads=threads)
    runs: dict[str, Callable[[list[int], int, int], _speed.Timing]] = {}
    notes: dict[str, str] = {}
    if have["onnx"]:
        from harness.backends.onnx import BACKEND as ONNX
        from tinylm_ref.onnx_export import export_onnx

        export_onnx(reference.model, reference.tokenizer, root / "onnx")
        runs["onnx"] = _run_model(ONNX.load(f"onnx:{root / 'onnx'}", options))
        notes["onnx"] = "float32"
    if have["gguf"]:
        from harness.backends.gguf import BACKEND as GGUF
        from harness.backends.gguf_write import write_llama_gguf
        from harness.backends.tinylm import TOKENIZER_DIR

        for qtype in ("F32", "Q8_0"):
            path = root / f"{preset}-{qtype.lower()}.gguf"
            write_llama_gguf(hf_model, TOKENIZER_DIR / f"{preset}.json", path, qtype=qtype)
            model = GGUF.load(f"gguf:{path}", options)
            runs[f"llamacpp_{qtype.lower()}"] = _run_model(model)
            notes[f"llamacpp_{qtype.lower()}"] = model.info.dtype + (
                "" if model.info.extra["prefill_batch"] > 1 else "; token-by-token prefill"
            )
    return runs, notes
