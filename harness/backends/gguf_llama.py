"""The llama.cpp calls the ``gguf`` backend and its crash probe share, importing neither torch nor the harness.

The probe child (``harness.backends.gguf_probe``) imports only this module, so it starts in a fraction of
a second instead of paying for torch. llama.cpp's own log goes into ``_LOG`` (never printed: its warnings are
not the user's concern) and its last error line into the one-line error when a file fails to load.
"""

from __future__ import annotations

import ctypes
from typing import Any

import numpy as np

from harness.errors import UserError

EXTRA = "pip install 'tinylm-harness[gguf]'"

_LOG: list[str] = []  # llama.cpp's recent log lines, for error messages; never printed
_LOG_CALLBACK: Any = None  # the ctypes callback must outlive every llama.cpp call


def import_llama() -> Any:
    """llama_cpp, with llama.cpp's own logging routed into ``_LOG`` (its warnings are not the user's concern;
    its last error line goes into the one-line error when a file fails to load)."""
    global _LOG_CALLBACK
    try:
        import llama_cpp
    except ImportError as exc:
        raise UserError(f"the gguf backend needs llama-cpp-python ({exc}); {EXTRA}") from None
    if _LOG_CALLBACK is None:
        _close_devnull_at_exit()

        def keep(level: int, text: bytes, user_data: Any) -> None:
            line = text.decode("utf-8", errors="replace").strip()
            if line:
                _LOG.append(line)
                del _LOG[:-20]

        _LOG_CALLBACK = llama_cpp.llama_log_callback(keep)
        llama_cpp.llama_log_set(_LOG_CALLBACK, ctypes.c_void_p(0))
    return llama_cpp


def _close_devnull_at_exit() -> None:
    """llama-cpp-python opens two /dev/null files at import and never closes them, which prints a
    ResourceWarning at every harness exit; close them when the interpreter leaves."""
    import atexit

    try:
        from llama_cpp import _utils
    except ImportError:
        return
    files = [getattr(_utils, name, None) for name in ("outnull_file", "errnull_file")]
    atexit.register(lambda: [f.close() for f in files if f is not None and hasattr(f, "close")])


def last_log_error() -> str:
    """llama.cpp's reason for the last failure: its "error loading model: ..." line when it logged one (it names
    the missing tensor or key), else the last line that reads like an error, else ''."""
    for line in reversed(_LOG):
        if "error loading model" in line:
            return line.split("error loading model:", 1)[-1].strip()[:240] or line[:240]
    for line in reversed(_LOG):
        if any(word in line.lower() for word in ("error", "failed", "invalid", "unknown", "cannot")):
            return line[:240]
    return ""


def open_llama(path: str, n_ctx: int, n_batch: int, threads: int | None, kv_type: int) -> Any:
    """A ``llama_cpp.Llama`` with the settings the harness needs (quiet, no mmap surprises, fixed KV type)."""
    llama_cpp = import_llama()
    return llama_cpp.Llama(
        model_path=str(path),
        n_ctx=n_ctx,
        n_batch=n_batch,
        n_ubatch=n_batch,
        n_threads=threads,
        n_threads_batch=threads,
        type_k=kv_type,
        type_v=kv_type,
        n_gpu_layers=0,
        logits_all=False,
        verbose=False,
    )


def run_tokens(llm: Any, ids: list[int], start: int, n_batch: int, all_logits: bool) -> np.ndarray:
    """Feed ``ids`` at positions ``start..`` (dropping any cache past ``start``); logits of every position
    (``all_logits``) or of the last one, as a float32 array (rows, vocab) owned by the caller.

    Uses llama-cpp-python's context and batch objects directly, as its own ``Llama.eval`` does, because
    ``eval`` keeps no logits unless the whole context's score matrix (n_ctx × vocab floats) is allocated."""
    ctx, batch, vocab = llm._ctx, llm._batch, llm.n_vocab()
    ctx.kv_cache_seq_rm(-1, start, -1)
    rows: list[np.ndarray] = []
    for i in range(0, len(ids), n_batch):
        chunk = ids[i : i + n_batch]
        batch.set_batch(batch=chunk, n_past=start + i, logits_all=all_logits)
        ctx.decode(batch)
        n_out = len(chunk) if all_logits else 1
        rows.append(np.ctypeslib.as_array(ctx.get_logits(), shape=(n_out * vocab,)).reshape(n_out, vocab).copy())
    return np.concatenate(rows) if all_logits else rows[-1]
