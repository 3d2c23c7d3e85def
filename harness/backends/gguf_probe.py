"""Child process for ``harness.backends.gguf_file.probe``: load a GGUF file and run one prefill + decode step.

Usage: ``python -m harness.backends.gguf_probe PATH N_CTX N_BATCH THREADS KV_TYPE TOKENS``. Exit 0 when
llama.cpp ran both; a Python error exits 1 with its message as the last stderr line; a crash inside
llama.cpp (SIGILL, SIGSEGV) ends this process only, which is the point.

``HARNESS_GGUF_PROBE_FAULT`` (for tests: no CPU at hand reproduces the AMX crash on demand) makes this
process kill itself with a real SIGILL where llama.cpp would have crashed: ``batched`` for a prefill batch
of more than one token, ``always`` for any batch.
"""

from __future__ import annotations

import os
import signal
import sys

FAULT_ENV = "HARNESS_GGUF_PROBE_FAULT"


def main(argv: list[str]) -> int:
    import resource

    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a crash here is expected: no core file in the user's cwd
    path, n_ctx, n_batch, threads, kv_type, tokens = argv[0], *map(int, argv[1:6])
    from harness.backends.gguf_llama import last_log_error, open_llama, run_tokens

    try:
        llm = open_llama(path, n_ctx, n_batch, threads or None, kv_type)
    except ValueError as exc:  # llama-cpp-python: "Failed to load model from file"; llama.cpp logged why
        raise ValueError(last_log_error() or str(exc)) from None
    vocab = llm.n_vocab()
    ids = [(7 * i + 1) % vocab for i in range(max(1, min(tokens, n_ctx - 1)))]
    fault = os.environ.get(FAULT_ENV, "")
    if fault == "always" or (fault == "batched" and n_batch > 1):
        os.kill(os.getpid(), signal.SIGILL)
    run_tokens(llm, ids, 0, n_batch, all_logits=True)
    if len(ids) + 1 < n_ctx:
        run_tokens(llm, [ids[-1]], len(ids), n_batch, all_logits=False)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except Exception as exc:  # the parent reports the last line
        print(f"{exc.__class__.__name__}: {exc}", file=sys.stderr)
        sys.exit(1)
