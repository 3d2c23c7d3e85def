"""The ``gguf`` backend: a GGUF model run by llama.cpp (through llama-cpp-python), driven by the harness's sampler.

Specs (see docs/backends.md):
  ``gguf:/path/to/model.gguf``          a local file (un-prefixed ``model.gguf`` paths too)
  ``gguf:ORG/NAME/FILE.gguf[@REVISION]`` one file of a Hub repository (only that file is downloaded)

llama.cpp computes the logits; the harness samples. Each step feeds one token through ``llama_decode`` and
reads that position's logits, and the shared ``tinylm_ref.sampling.sample_loop`` picks the next token with
the caller's ``torch.Generator``: the same sampler, stop rules, timing points and raw log-probs as every
other backend. llama.cpp's own sampler is never used (the manifest says ``sampler: harness``).

The KV cache is float32 by default (``--model-option kv_cache=f16`` for llama.cpp's default): with f16 keys
and values the logits move by ~3e-4 against the same weights in transformers, with f32 by ~1e-6.

Before llama.cpp opens a file, ``gguf_file.inspect_gguf`` checks it (magic, truncation, architecture) and a
child process runs a batched prefill (``gguf_file.probe``): if llama.cpp dies there (an illegal instruction
in a CPU-specific kernel), this backend prefills token by token, and says so in the manifest; if even that
dies, the model is refused in one line. Nothing in a GGUF file is code; nothing from a repository is run.

llama_cpp is imported only when a model loads, so registering the backend costs nothing without ``[gguf]``.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from harness.backends.gguf_llama import import_llama, last_log_error, open_llama, run_tokens
from harness.backends.hf_hub import check_cached_when_offline, download_snapshot, file_sha256, is_local_target
from harness.errors import UserError
from harness.hookspecs import hookimpl
from harness.types import Generation, LoadOptions, ModelInfo, SamplingParams
from harness.validation import parse_int
from tinylm_ref.sampling import sample_loop

PREFIX = "gguf:"
KV_TYPES = {"f32": 0, "f16": 1}  # GGML_TYPE_F32, GGML_TYPE_F16
DEFAULT_MAX_CONTEXT = 4096  # a GGUF's trained context can be 128k; its f32 KV cache would not fit in memory
PREFILL_BATCH = 512
PROBE_TOKENS = 64


class GGUFModel:
    """A llama.cpp context behind the harness Model contract (batch size 1, harness sampling)."""

    def __init__(self, llm: Any, info: ModelInfo, stop_ids: list[int], n_batch: int) -> None:
        self.llm, self.info, self.n_batch = llm, info, n_batch
        self.stop_ids = frozenset(stop_ids)
        self.eos_id: int | None = stop_ids[0] if stop_ids else None
        self.device = torch.device("cpu")
        self._pieces: dict[int, bytes] = {}

    def encode(self, text: str) -> list[int]:
        """llama.cpp's tokenizer from the GGUF vocabulary; BOS when the file says the model adds one."""
        return list(self.llm.tokenize(text.encode("utf-8"), add_bos=True, special=False))

    def _piece(self, token: int) -> bytes:
        """The token's exact bytes from the GGUF vocabulary; control tokens give b""."""
        import llama_cpp

        if token not in self._pieces:
            vocab = llama_cpp.llama_model_get_vocab(self.llm._model.model)
            buf = ctypes.create_string_buffer(256)
            n = llama_cpp.llama_token_to_piece(vocab, token, buf, len(buf), 0, False)
            self._pieces[token] = buf.raw[: max(n, 0)]
        return self._pieces[token]

    def decode(self, ids: list[int]) -> str:
        """The pieces' bytes joined, then UTF-8 with U+FFFD for invalid bytes, as byte-level BPE tokenizers
        decode; llama.cpp's own detokenizer also cleans up spaces, which the other backends do not."""
        return b"".join(self._piece(int(i)) for i in ids).decode("utf-8", errors="replace")

    def generate(self, prompt_ids: list[int], sampling: SamplingParams, generator: torch.Generator) -> Generation:
        """The shared ``sample_loop`` over llama.cpp's logits, one ``llama_decode`` per token."""
        context = self.info.context_length
        if not prompt_ids:
            raise UserError(f"model {self.info.name}: the prompt encodes to no tokens; give a non-empty prompt")
        if len(prompt_ids) >= context:
            raise UserError(
                f"model {self.info.name}: prompt has {len(prompt_ids)} tokens; the context holds {context} "
                "with room for one more; shorten the prompt (or raise --model-option n_ctx)"
            )
        state = {"length": 0}

        def next_logits(token_id: int | None) -> torch.Tensor:
            ids = list(prompt_ids) if token_id is None else [token_id]
            logits = run_tokens(self.llm, ids, state["length"], self.n_batch, all_logits=False)
            state["length"] += len(ids)
            return torch.from_numpy(logits)

        return sample_loop(
            next_logits,
            len(prompt_ids),
            context,
            sampling.max_new_tokens,
            sampling.temperature,
            sampling.top_k,
            generator,
            self.stop_ids,
            self.device,
        )

    def score(self, ids: list[int]) -> list[float]:
        """Per-token NLL (nats) of ``ids[1:]``: one prefill with every position's logits, log-softmax in float32."""
        if len(ids) < 2:
            return []
        if len(ids) > self.info.context_length:
            raise ValueError(f"score() got {len(ids)} ids; model {self.info.name} holds {self.info.context_length}")
        logits = torch.from_numpy(run_tokens(self.llm, list(ids[:-1]), 0, self.n_batch, all_logits=True))
        logprobs = torch.log_softmax(logits.float(), dim=-1)
        return (-logprobs.gather(1, torch.tensor(ids[1:])[:, None])[:, 0]).tolist()

    def close(self) -> None:
        if self.llm is not None:
            self.llm.close()
        self.llm = None


def _option_bool(value: Any, label: str) -> bool:
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise UserError(f"{label}={value!r}: must be true or false")


class GGUFBackend:
    """``gguf:`` specs: local GGUF files and single files of Hub repositories."""

    name = "gguf"
    option_keys = ("kv_cache", "n_ctx", "probe", "hf_token")

    def claims(self, spec: str) -> bool:
        """Un-prefixed: an existing ``.gguf`` file."""
        path = Path(spec).expanduser()
        return path.suffix.lower() == ".gguf" and path.is_file()

    def _parse(self, spec: str) -> tuple[Path | None, str | None, str | None, str]:
        """(local path, repo id, file in repo, revision) from the spec, syntax only."""
        target = spec[len(PREFIX) :] if spec.startswith(PREFIX) else spec
        if not target:
            raise UserError(f"model {spec!r}: empty spec; use gguf:PATH.gguf or gguf:ORG/NAME/FILE.gguf[@REVISION]")
        if is_local_target(target) or Path(target).expanduser().is_file():
            return Path(target).expanduser(), None, None, ""
        repo_file, _, revision = target.partition("@")
        parts = repo_file.split("/")
        if len(parts) < 3 or not parts[-1].lower().endswith(".gguf") or not all(parts):
            raise UserError(
                f"model {spec}: {target!r} is neither an existing file nor ORG/NAME/FILE.gguf[@REVISION]; "
                "give a .gguf path or a Hub repository and the file in it"
            )
        return None, "/".join(parts[:2]), "/".join(parts[2:]), revision or "main"

    def check_options(self, spec: str, options: LoadOptions) -> dict[str, Any]:
        """Spec syntax and options before the run directory exists; returns the parsed options."""
        path, repo_id, _, revision = self._parse(spec)
        if path is not None and not path.is_file():
            raise UserError(f"model {spec}: {path} does not exist or is not a file; give a .gguf file")
        if options.dtype not in ("float32", "auto"):
            raise UserError(f"model {spec}: --dtype {options.dtype}: a GGUF file fixes its weight types; drop --dtype")
        if options.batch_size > 1:
            raise UserError(f"model {spec}: the gguf backend decodes at batch size 1; drop --batch-size")
        if options.compile:
            raise UserError(f"model {spec}: --compile applies to torch backends; drop it for gguf")
        if options.device not in ("auto", "cpu"):
            raise UserError(
                f"model {spec}: --device {options.device}: this backend runs llama.cpp on the CPU; use --device cpu"
            )
        kv = str(options.extra.get("kv_cache", "f32")).lower()
        if kv not in KV_TYPES:
            raise UserError(f"model {spec}: --model-option kv_cache={kv!r}: use f32 (default) or f16")
        n_ctx = options.extra.get("n_ctx")
        parsed = {
            "kv_cache": kv,
            "n_ctx": None if n_ctx is None else parse_int(f"model {spec}: --model-option n_ctx", n_ctx, 2, 1 << 20),
            "probe": _option_bool(options.extra.get("probe", True), f"model {spec}: --model-option probe"),
        }
        if path is None and repo_id is not None:  # last: option mistakes are named first
            check_cached_when_offline(spec, repo_id, revision)  # offline: one line before any run directory
        return parsed

    def _resolve(self, spec: str, options: LoadOptions) -> tuple[Path, str | None, str | None]:
        path, repo_id, filename, revision = self._parse(spec)
        if path is not None:
            return path, None, None
        assert repo_id is not None and filename is not None
        snapshot = download_snapshot(
            spec, repo_id, revision, allow_patterns=[filename], token=options.extra.get("hf_token")
        )
        local = snapshot.path / filename
        if not local.is_file():
            raise UserError(
                f"model {spec}: {repo_id}@{revision} has no file {filename!r}; check the file name in the repository"
            )
        return local, repo_id, snapshot.revision

    def load(self, spec: str, options: LoadOptions) -> GGUFModel:
        from harness.backends.gguf_file import inspect_gguf, label, probe

        opts = self.check_options(spec, options)
        llama_cpp = import_llama()
        path, repo_id, revision = self._resolve(spec, options)
        summary = inspect_gguf(path, spec)
        trained = (
            summary.context_length if isinstance(summary.context_length, int) and summary.context_length > 0 else 2048
        )
        n_ctx = opts["n_ctx"] or min(trained, DEFAULT_MAX_CONTEXT)
        threads = options.threads or None
        kv_type = KV_TYPES[opts["kv_cache"]]
        n_batch, prefill_note = min(PREFILL_BATCH, n_ctx), "batched"
        if opts["probe"]:
            result = probe(path, n_ctx, n_batch, threads, kv_type, PROBE_TOKENS)
            if not result.ok and result.signal_name is None:
                raise UserError(f"model {spec}: llama.cpp {llama_cpp.__version__} cannot run {path}: {result.detail}")
            if not result.ok:
                single = probe(path, n_ctx, 1, threads, kv_type, PROBE_TOKENS)
                if not single.ok:
                    raise UserError(
                        f"model {spec}: llama.cpp {llama_cpp.__version__} crashes on {path} on this CPU "
                        f"({result.detail}; token by token too: {single.detail}); try another quantisation (e.g. F32)"
                    )
                n_batch, prefill_note = (
                    1,
                    f"token by token (a batched prefill was killed by {result.signal_name} in a probe)",
                )
        try:
            llm = open_llama(str(path), n_ctx, n_batch, threads, kv_type)
        except Exception as exc:  # llama-cpp-python raises ValueError("Failed to load model from file: ...")
            detail = last_log_error() or str(exc)
            raise UserError(f"model {spec}: llama.cpp {llama_cpp.__version__} cannot load {path} ({detail})") from None
        stop = [i for i in (llm.token_eos(), _eot(llm)) if isinstance(i, int) and 0 <= i < llm.n_vocab()]
        stop = list(dict.fromkeys(stop))
        info = ModelInfo(
            name=spec,
            spec=spec,
            backend="gguf",
            parameters=int(llm._model.n_params()),
            vocab_size=int(llm.n_vocab()),
            context_length=min(int(llm.n_ctx()), n_ctx),  # llama.cpp pads n_ctx up to a multiple of 256
            device="cpu",
            dtype=label(summary),
            source=repo_id or str(path.resolve()),
            weights_sha256=file_sha256(path),
            tokenizer_sha256=None,  # the vocabulary is inside the GGUF file, covered by weights_sha256
            revision=revision,
            extra={
                "runtime": "llama.cpp",
                "llama_cpp_python_version": llama_cpp.__version__,
                "file": str(path),
                "architecture": summary.architecture,
                "tensor_types": summary.tensor_types,
                "kv_cache_type": opts["kv_cache"],
                "trained_context": summary.context_length,
                "n_threads": llm.context_params.n_threads,
                "prefill": prefill_note,
                "prefill_batch": n_batch,
                "probed": opts["probe"],
                "sampler": "harness (tinylm_ref.sampling.pick_token on llama.cpp logits); llama.cpp's sampler unused",
                "eos_ids": stop,
            },
        )
        return GGUFModel(llm, info, stop, n_batch)

    def available(self) -> list[tuple[str, str]]:
        return [
            ("gguf:PATH.gguf", "a GGUF model file, run by llama.cpp (f32 KV cache)"),
            ("gguf:ORG/NAME/FILE.gguf[@REVISION]", "one GGUF file of a Hugging Face Hub repository"),
        ]


def _eot(llm: Any) -> int | None:
    """The end-of-turn token, when the vocabulary has one distinct from EOS (chat models)."""
    import llama_cpp

    try:
        vocab = llama_cpp.llama_model_get_vocab(llm._model.model)
        value = int(llama_cpp.llama_vocab_eot(vocab))
    except (AttributeError, TypeError):
        return None
    return value if value >= 0 else None


BACKEND = GGUFBackend()


@hookimpl
def register_backends(register: Callable[[Any], None]) -> None:
    register(BACKEND)
