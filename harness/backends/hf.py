"""The ``hf`` backend: any causal LM that transformers can load, from the Hub or a local directory.

Specs (see docs/backends.md):
  ``hf:ORG/NAME``             the Hub repository at ``main``
  ``hf:ORG/NAME@REVISION``    pinned to a branch, tag or commit (the resolved commit is recorded)
  ``hf:/path/to/dir``         a ``save_pretrained`` directory (``./``, ``../`` and ``~`` paths too)
  ``/path/to/dir``            un-prefixed, when its config.json has a transformers ``model_type``

Generation does not use ``model.generate()``: it runs the same loop as the reference decoder
(``tinylm_ref.sampling.generate``) over the model's own KV cache, with the same timing points,
the same sampling function (``pick_token``, so the caller's ``torch.Generator`` draws the same
random numbers) and log-probs under the raw distribution. ``generate()`` would apply the
checkpoint's generation_config (repetition penalties, forced tokens, min length...), which would
make the numbers of the two backends incomparable.
"""

from __future__ import annotations

import gc
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from harness.backends.hf_hub import (
    Snapshot,
    check_cached_when_offline,
    download_snapshot,
    files_sha256,
    hub_cache_dir,
    is_local_target,
    split_repo_spec,
)
from harness.devices import resolve_device
from harness.errors import UserError
from harness.hookspecs import hookimpl
from harness.types import Generation, LoadOptions, ModelInfo, SamplingParams
from tinylm_ref.config import load_config_json
from tinylm_ref.sampling import sample_loop

PREFIX = "hf:"
#: Never downloaded: other frameworks' weights, exports and raw training checkpoints.
IGNORE_PATTERNS = [
    "*.msgpack",
    "*.h5",
    "*.ot",
    "*.onnx",
    "*.onnx_data",
    "onnx/*",
    "*.tflite",
    "*.gguf",
    "*.mlmodel",
    "coreml/*",
    "openvino/*",
    "*.pt",
    "*.pth",
    "*.ckpt",
    "*.tar",
    "*.zip",
    "*.npz",
]
WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin")
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer.model",
    "vocab.json",
    "merges.txt",
    "vocab.txt",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
)
_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float16": torch.float16,
    "fp16": torch.float16,
    "half": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
}
_CONTEXT_FIELDS = (
    "max_position_embeddings",
    "n_positions",
    "max_seq_len",
    "seq_length",
    "n_ctx",
    "max_sequence_length",
)


def _resolve_dtype(name: str, spec: str) -> torch.dtype | str:
    if name == "auto":
        return "auto"  # whatever the checkpoint was saved in
    if name.lower() not in _DTYPES:
        raise UserError(f"model {spec}: --dtype {name!r} is not supported; use float32, float16, bfloat16 or auto")
    return _DTYPES[name.lower()]


def _as_ids(value: Any) -> list[int]:
    if value is None:
        return []
    return [int(v) for v in (value if isinstance(value, (list, tuple)) else [value])]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{exc.__class__.__name__}: {text.splitlines()[0][:300] if text else ''}"


def _refused_pickle(exc: BaseException, spec: str) -> UserError | None:
    """A ``pytorch_model.bin`` that needs more than tensors: one line that never echoes torch's advice to
    retry with ``weights_only=False``, but points at safetensors."""
    import pickle

    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, pickle.UnpicklingError) or "Weights only load failed" in str(seen):
            return UserError(
                f"model {spec}: refused: its pytorch_model*.bin pickle holds more than tensors and loading it could "
                "run code; if you trust its source, convert it to model.safetensors and load that"
            )
        seen = seen.__cause__ or seen.__context__
    return None


def _parse_add_bos(value: Any, spec: str) -> bool | str:
    """``add_bos`` from a command line, a YAML value or Python: auto, true or false."""
    if isinstance(value, bool) or value == "auto":
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0", "yes", "no", "auto"):
        text = value.strip().lower()
        return "auto" if text == "auto" else text in ("true", "1", "yes")
    raise UserError(f"model {spec}: --model-option add_bos={value!r}: must be auto, true or false")


class HFModel:
    """A transformers causal LM behind the harness Model contract (batch size 1, raw log-probs)."""

    def __init__(self, model: Any, tokenizer: Any, info: ModelInfo, add_bos: bool | str = "auto") -> None:
        self.model, self.tokenizer, self.info = model, tokenizer, info
        self.device = next(model.parameters()).device
        config, gen_config = model.config, getattr(model, "generation_config", None)
        vocab = info.vocab_size
        # Every id that ends generation: the tokenizer's EOS plus the config's / generation config's list
        # (chat models list several). Ids outside the vocabulary could never be sampled; drop them.
        stop = _as_ids(getattr(tokenizer, "eos_token_id", None)) + _as_ids(getattr(config, "eos_token_id", None))
        stop += _as_ids(getattr(gen_config, "eos_token_id", None))
        stop = [i for i in dict.fromkeys(stop) if 0 <= i < vocab]
        self.eos_id: int | None = stop[0] if stop else None
        self.stop_ids: frozenset[int] = frozenset(stop)
        self.bos_id: int | None = getattr(tokenizer, "bos_token_id", None)
        self.add_bos = add_bos
        params = inspect.signature(model.forward).parameters
        self._cache_kw = "cache" if "cache" in params else "past_key_values" if "past_key_values" in params else None
        self._logits_to_keep = "logits_to_keep" in params

    def encode(self, text: str) -> list[int]:
        """Token ids with the model's BOS first, when it has one.

        The tokenizer's own template decides first (Llama-style tokenizers add BOS). GPT-2-family
        tokenizers define ``<|endoftext|>`` as BOS but never add it; it is the document separator
        those models were trained with, so a prompt (or a judged text) starts a document with it.
        ``LoadOptions.extra["add_bos"]`` = true/false overrides the "auto" policy.
        """
        ids = list(self.tokenizer(text, add_special_tokens=True)["input_ids"])
        want = self.add_bos if isinstance(self.add_bos, bool) else True
        if want and self.bos_id is not None and (not ids or ids[0] != self.bos_id):
            ids = [self.bos_id, *ids]
        return ids

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=True)

    def _forward(self, idx: torch.Tensor, cache: Any, last_only: bool) -> tuple[torch.Tensor, Any]:
        kwargs: dict[str, Any] = {}
        if self._cache_kw is not None:
            kwargs[self._cache_kw] = cache
            kwargs["use_cache"] = True
        if last_only and self._logits_to_keep:
            kwargs["logits_to_keep"] = 1
        out = self.model(input_ids=idx, **kwargs)
        new_cache = getattr(out, "cache", None)  # transformers >= 5 name; older versions: past_key_values
        if new_cache is None and self._cache_kw == "past_key_values":
            new_cache = out.past_key_values
        return out.logits, new_cache

    @torch.inference_mode()
    def generate(
        self, prompt_ids: list[int], sampling: SamplingParams, generator: torch.Generator, on_token: Any = None
    ) -> Generation:
        """The shared ``tinylm_ref.sampling.sample_loop``: same stop rules, timing points and sampler.

        ``on_token`` (optional) sees each token as it is sampled: ``harness serve`` streams through it."""
        context = self.info.context_length
        if not prompt_ids:
            raise UserError(f"model {self.info.name}: the prompt encodes to no tokens; give a non-empty prompt")
        if len(prompt_ids) >= context:
            raise UserError(
                f"model {self.info.name}: prompt has {len(prompt_ids)} tokens; the context holds {context} "
                "with room for one more; shorten the prompt"
            )
        state: dict[str, Any] = {
            "cache": None,
            "full": torch.tensor([prompt_ids], dtype=torch.long, device=self.device),
        }

        def next_logits(token_id: int | None) -> torch.Tensor:
            token = None if token_id is None else torch.tensor([[token_id]], device=self.device)
            if self._cache_kw is None:  # no KV cache: re-run the whole sequence
                if token is not None:
                    state["full"] = torch.cat([state["full"], token], dim=1)
                logits, _ = self._forward(state["full"], None, last_only=True)
            else:
                logits, state["cache"] = self._forward(
                    state["full"] if token is None else token, state["cache"], last_only=True
                )
            return logits[:, -1, :]

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
            on_token,
        )

    @torch.inference_mode()
    def score(self, ids: list[int]) -> list[float]:
        """Per-token NLL (nats) of ``ids[1:]``: one full forward, no cache, raw distribution in float32."""
        if len(ids) < 2:
            return []
        if len(ids) > self.info.context_length:
            raise ValueError(f"score() got {len(ids)} ids; model {self.info.name} holds {self.info.context_length}")
        x = torch.tensor([ids], dtype=torch.long, device=self.device)
        kwargs: dict[str, Any] = {"use_cache": False} if self._cache_kw is not None else {}
        logits = self.model(input_ids=x[:, :-1], **kwargs).logits[0].float()
        logprobs = torch.log_softmax(logits, dim=-1)
        return (-logprobs.gather(1, x[0, 1:, None])[:, 0]).tolist()

    def close(self) -> None:
        self.model = None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def _context_length(config: Any, tokenizer: Any) -> int:
    for name in _CONTEXT_FIELDS:
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(limit, int) and 0 < limit < 10**7:  # tokenizers without a limit report ~1e30
        return limit
    return 2048


def _check_code(snapshot: Path, spec: str, trust_remote_code: bool) -> dict[str, Any]:
    """Read config.json and refuse repository code unless the user opted in, before transformers runs anything."""
    config_path = snapshot / "config.json"
    if not config_path.is_file():
        raise UserError(f"model {spec}: no config.json in {snapshot}; is it a transformers model directory?")
    try:
        config = load_config_json(config_path)
    except ValueError as exc:
        raise UserError(f"model {spec}: {config_path}: {exc}; re-download it") from exc
    if not isinstance(config, dict):
        raise UserError(f"model {spec}: {config_path} is not a JSON object; re-download it")
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    model_type = config.get("model_type")
    custom = ["config.json"] if "auto_map" in config else []
    tok_config = snapshot / "tokenizer_config.json"
    try:
        tok_data = load_config_json(tok_config) if tok_config.is_file() else {}
        if isinstance(tok_data, dict) and "auto_map" in tok_data:
            custom.append(tok_config.name)
    except ValueError:
        pass  # AutoTokenizer reports a broken tokenizer config itself
    if model_type not in CONFIG_MAPPING or (custom and not model_type):
        if custom and not trust_remote_code:
            raise UserError(
                f"model {spec}: model_type {model_type!r} needs Python code from the repository (auto_map in "
                f"{', '.join(custom)}); pass --trust-remote-code if you trust that code"
            )
        if not custom:
            import transformers

            raise UserError(
                f"model {spec}: transformers {transformers.__version__} does not know model_type "
                f"{model_type!r}; upgrade transformers (pip install -U transformers)"
            )
    return config


def load_transformers_dir(snapshot: Snapshot, spec: str, options: LoadOptions) -> HFModel:
    """Load a snapshot directory with the Auto classes; every failure is a one-line UserError."""
    try:
        import transformers
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from harness.backends.hf_tinylm_arch import register_auto_classes
    except ImportError as exc:
        raise UserError(
            f"model {spec}: the hf backend needs transformers ({exc}); pip install 'tinylm-harness[hf]'"
        ) from exc

    register_auto_classes()
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    device = resolve_device(options.device, spec)
    dtype = _resolve_dtype(options.dtype, spec)
    trust = bool(options.trust_remote_code)
    _check_code(snapshot.path, spec, trust)
    weights = sorted(p for pattern in WEIGHT_PATTERNS for p in snapshot.path.glob(pattern))
    if not weights:
        raise UserError(
            f"model {spec}: no weights (*.safetensors or pytorch_model*.bin) in {snapshot.path}; "
            "re-download the model online (the cached copy is incomplete)"
        )
    common = {"trust_remote_code": trust, "local_files_only": True}
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(snapshot.path), **common)
    except Exception as exc:  # transformers raises many types for a missing or broken tokenizer
        if "trust_remote_code" in str(exc):
            raise UserError(
                f"model {spec}: its tokenizer needs Python code from the repository; pass --trust-remote-code "
                "if you trust it"
            ) from exc
        raise UserError(
            f"model {spec}: cannot load its tokenizer ({_first_line(exc)}); the repository needs tokenizer "
            "files that AutoTokenizer reads"
        ) from exc
    dtype_kw = "dtype" if int(transformers.__version__.split(".")[0]) >= 5 else "torch_dtype"
    try:
        model = AutoModelForCausalLM.from_pretrained(str(snapshot.path), **{dtype_kw: dtype}, **common)
    except Exception as exc:
        refused = _refused_pickle(exc, spec)
        if refused is not None:
            raise refused from exc
        if "trust_remote_code" in str(exc):
            raise UserError(
                f"model {spec}: needs Python code from the repository; pass --trust-remote-code if you trust it"
            ) from exc
        raise UserError(f"model {spec}: transformers cannot load it as a causal LM ({_first_line(exc)})") from exc
    model.to(device).eval()
    config = model.config
    add_bos = _parse_add_bos(options.extra.get("add_bos", "auto"), spec)
    info = ModelInfo(
        name=spec,
        spec=spec,
        backend="hf",
        parameters=sum(p.numel() for p in model.parameters()),  # parameters() yields a tied tensor once
        vocab_size=int(config.vocab_size),
        context_length=_context_length(config, tokenizer),
        device=str(device),
        dtype=str(next(model.parameters()).dtype).removeprefix("torch."),
        source=snapshot.repo_id or str(snapshot.path.resolve()),
        weights_sha256=files_sha256(weights),
        tokenizer_sha256=files_sha256([snapshot.path / n for n in TOKENIZER_FILES if (snapshot.path / n).is_file()]),
        revision=snapshot.revision,
        extra={
            "model_type": config.model_type,
            "architectures": list(getattr(config, "architectures", None) or []),
            "transformers_version": transformers.__version__,
            "snapshot": str(snapshot.path),
            "weight_files": [p.name for p in weights],
            "trust_remote_code": trust,
        },
    )
    wrapped = HFModel(model, tokenizer, info, add_bos=add_bos)
    info.extra.update(
        {
            "eos_ids": sorted(wrapped.stop_ids),
            "bos_id": wrapped.bos_id,
            "pad_id": getattr(tokenizer, "pad_token_id", None),
            "kv_cache": wrapped._cache_kw is not None,
        }
    )
    return wrapped


def _looks_like_transformers_dir(path: Path) -> bool:
    config = path / "config.json"
    if not (path.is_dir() and config.is_file()):
        return False
    try:
        data = load_config_json(config)
    except ValueError:
        return False
    return isinstance(data, dict) and "model_type" in data


class HFBackend:
    """``hf:`` specs: Hub ids (downloaded and pinned) and local save_pretrained directories."""

    name = "hf"
    #: ``--model-option`` keys this backend reads (see harness.validation.check_option_keys)
    option_keys = ("add_bos", "hf_token")

    def claims(self, spec: str) -> bool:
        """Un-prefixed transformers directories (config.json with a ``model_type``; tinylm checkpoints have none)."""
        return _looks_like_transformers_dir(Path(spec).expanduser())

    def check_options(self, spec: str, options: LoadOptions) -> None:
        """Everything about a spec and its options that needs neither the network nor transformers: called
        before the run directory exists, so a bad spec leaves nothing behind (and again at load)."""
        _resolve_dtype(str(options.dtype), spec)
        _parse_add_bos(options.extra.get("add_bos", "auto"), spec)
        target = spec[len(PREFIX) :] if spec.startswith(PREFIX) else spec
        if not target:
            raise UserError(f"model {spec!r}: empty spec; use hf:ORG/NAME[@REVISION] or hf:/path/to/dir")
        if is_local_target(target):
            path = Path(target).expanduser()
            if not path.is_dir():
                raise UserError(f"model {spec}: directory {path} does not exist; give a save_pretrained directory")
            return
        repo_id, revision = split_repo_spec(target)
        from huggingface_hub.errors import HFValidationError
        from huggingface_hub.utils import validate_repo_id

        try:
            validate_repo_id(repo_id)
        except HFValidationError:
            raise UserError(
                f"model {spec}: {repo_id!r} is not a valid Hub id; use hf:ORG/NAME[@REVISION] or hf:/path/to/dir"
            ) from None
        if not revision.strip() or any(c.isspace() or ord(c) < 32 for c in revision) or ".." in revision:
            raise UserError(f"model {spec}: revision {revision!r} is not a branch, tag or commit name")
        check_cached_when_offline(spec, repo_id, revision)

    def load(self, spec: str, options: LoadOptions) -> HFModel:
        self.check_options(spec, options)
        target = spec[len(PREFIX) :] if spec.startswith(PREFIX) else spec
        if is_local_target(target):
            path = Path(target).expanduser()
            if not path.is_dir():
                raise UserError(f"model {spec}: directory {path} does not exist; give a save_pretrained directory")
            return load_transformers_dir(Snapshot(path=path, repo_id=None, revision=None), spec, options)
        repo_id, revision = split_repo_spec(target)
        ignore = list(IGNORE_PATTERNS) + ([] if options.trust_remote_code else ["*.py"])
        token = options.extra.get("hf_token")
        snapshot = download_snapshot(spec, repo_id, revision, ignore_patterns=[*ignore, "*.bin"], token=token)
        if not any(snapshot.path.glob("*.safetensors")):  # older repos only ship pytorch_model.bin
            snapshot = download_snapshot(spec, repo_id, revision, ignore_patterns=ignore, token=token)
        return load_transformers_dir(snapshot, spec, options)

    def available(self) -> list[tuple[str, str]]:
        rows = [
            ("hf:ORG/NAME[@REVISION]", "any causal LM on the Hugging Face Hub (downloaded once, then cached)"),
            ("hf:/path/to/dir", "a transformers save_pretrained directory"),
        ]
        cache = hub_cache_dir()
        for repo in sorted(cache.glob("models--*")) if cache.is_dir() else []:
            snapshots = sorted((repo / "snapshots").glob("*/config.json"))
            if snapshots:
                repo_id = repo.name[len("models--") :].replace("--", "/")
                rows.append((f"hf:{repo_id}", f"cached in {cache} ({len(snapshots)} snapshot(s))"))
        return rows


BACKEND = HFBackend()


@hookimpl
def register_backends(register: Callable[[Any], None]) -> None:
    register(BACKEND)
