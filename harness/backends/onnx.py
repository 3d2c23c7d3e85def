"""The ``onnx`` backend: a causal-LM decoder exported to ONNX, run by ONNX Runtime (CPU; CUDA when present).

Specs (see docs/backends.md):
  ``onnx:/path/to/dir``        a directory with the graph(s), ``tokenizer.json`` and ``config.json``
  ``onnx:/path/to/model.onnx`` that graph in its directory
  ``onnx:ORG/NAME[@REVISION]`` a Hub repository (only the graph, its external data and the JSON files)

The graph must follow optimum's causal-LM layout (``harness.backends.onnx_graph``); ``tinylm export onnx``
writes it for any tinylm checkpoint. Generation runs the shared ``tinylm_ref.sampling.sample_loop`` on the
logits ONNX Runtime returns, so the sampler, the caller's ``torch.Generator``, the timing points and the
raw log-probs are those of every other backend; the same weights give the same tokens for the same seed.

This module imports neither onnxruntime nor tokenizers' heavy parts until a model loads, so registering
the backend costs nothing for a user without the ``[onnx]`` extra.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from harness.backends.hf_hub import (
    Snapshot,
    check_cached_when_offline,
    download_snapshot,
    files_sha256,
    is_local_target,
    split_repo_spec,
)
from harness.backends.onnx_graph import MERGED_FILES, SPLIT_FILES, Signature, find_graphs, read_signature
from harness.errors import UserError
from harness.hookspecs import hookimpl
from harness.types import Generation, LoadOptions, ModelInfo, SamplingParams
from tinylm_ref.config import load_config_json
from tinylm_ref.sampling import sample_loop

PREFIX = "onnx:"
EXTRA = "pip install 'tinylm-harness[onnx]'"
META_FILES = [
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
]
_EOS_NAMES = ("<eos>", "</s>", "<|endoftext|>", "<|end_of_text|>", "<|im_end|>")


def _import_ort() -> Any:
    try:
        import onnxruntime
    except ImportError as exc:
        raise UserError(f"the onnx backend needs onnxruntime ({exc}); {EXTRA}") from None
    return onnxruntime


def _graph_patterns(names: tuple[str, ...]) -> list[str]:
    return [p for name in names for p in (name, f"{name}_data", f"onnx/{name}", f"onnx/{name}_data")]


def _ids(value: Any) -> list[int]:
    if value is None:
        return []
    return [int(v) for v in (value if isinstance(value, (list, tuple)) else [value])]


def _json(path: Path, spec: str) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = load_config_json(path)
    except ValueError as exc:
        raise UserError(f"model {spec}: {path}: {exc}; re-export or re-download it") from exc
    if not isinstance(data, dict):
        raise UserError(f"model {spec}: {path} is not a JSON object; re-export or re-download it")
    return data


class OnnxModel:
    """An ONNX Runtime session (or a prefill and a decode session) behind the harness Model contract."""

    def __init__(
        self,
        session: Any,
        prefill: Any | None,
        sig: Signature,
        prefill_sig: Signature | None,
        tokenizer: Any,
        info: ModelInfo,
        stop_ids: list[int],
        heads: int,
        head_dim: int,
    ) -> None:
        self.session, self.prefill_session, self.sig, self.prefill_sig = session, prefill, sig, prefill_sig
        self.tokenizer, self.info = tokenizer, info
        self.stop_ids = frozenset(stop_ids)
        self.eos_id: int | None = stop_ids[0] if stop_ids else None
        self.heads, self.head_dim = heads, head_dim
        self.device = torch.device("cpu")  # logits come back to the host as numpy arrays

    def encode(self, text: str) -> list[int]:
        """Token ids from ``tokenizer.json``, with whatever BOS its post-processor adds."""
        return list(self.tokenizer.encode(text).ids)

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=True)

    def _empty_past(self) -> list[np.ndarray]:
        shape = (1, self.heads, 0, self.head_dim)
        return [np.zeros(shape, dtype=self.sig.past_dtype) for _ in range(2 * self.sig.n_layers)]

    def _run(self, ids: list[int], start: int, past: list[np.ndarray] | None) -> tuple[np.ndarray, list[np.ndarray]]:
        """Feed ``ids`` at positions ``start..``; returns logits (1, T, V) and the new past."""
        prefill = past is None and self.prefill_session is not None
        session, sig = (self.prefill_session, self.prefill_sig) if prefill else (self.session, self.sig)
        assert sig is not None
        feed: dict[str, Any] = {"input_ids": np.asarray([ids], dtype=np.int64)}
        if sig.uses_mask:
            feed["attention_mask"] = np.ones((1, start + len(ids)), dtype=np.int64)
        if sig.uses_positions:
            feed["position_ids"] = np.arange(start, start + len(ids), dtype=np.int64)[None]
        if sig.cache_branch:
            feed["use_cache_branch"] = np.asarray([past is not None])
        if sig.n_layers:
            for i, array in enumerate(past if past is not None else self._empty_past()):
                feed[f"past_key_values.{i // 2}.{'key' if i % 2 == 0 else 'value'}"] = array
        out = session.run(None, feed)
        named = dict(zip(sig.outputs, out, strict=True))
        present = [named[f"present.{i // 2}.{'key' if i % 2 == 0 else 'value'}"] for i in range(2 * self.sig.n_layers)]
        return named["logits"], present

    def generate(self, prompt_ids: list[int], sampling: SamplingParams, generator: torch.Generator) -> Generation:
        """The shared ``sample_loop`` over ORT's logits: same stop rules, timing points and sampler."""
        context = self.info.context_length
        if not prompt_ids:
            raise UserError(f"model {self.info.name}: the prompt encodes to no tokens; give a non-empty prompt")
        if len(prompt_ids) >= context:
            raise UserError(
                f"model {self.info.name}: prompt has {len(prompt_ids)} tokens; the context holds {context} "
                "with room for one more; shorten the prompt"
            )
        state: dict[str, Any] = {"past": None, "length": 0}

        def next_logits(token_id: int | None) -> torch.Tensor:
            ids = list(prompt_ids) if token_id is None else [token_id]
            logits, state["past"] = self._run(ids, state["length"], state["past"])
            state["length"] += len(ids)
            return torch.from_numpy(np.ascontiguousarray(logits[:, -1, :]))

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
        """Per-token NLL (nats) of ``ids[1:]``: one forward with an empty past, log-softmax in float32."""
        if len(ids) < 2:
            return []
        if len(ids) > self.info.context_length:
            raise ValueError(f"score() got {len(ids)} ids; model {self.info.name} holds {self.info.context_length}")
        logits, _ = self._run(list(ids[:-1]), 0, None)
        logprobs = torch.log_softmax(torch.from_numpy(logits[0]).float(), dim=-1)
        target = torch.tensor(ids[1:])[:, None]
        return (-logprobs.gather(1, target)[:, 0]).tolist()

    def close(self) -> None:
        self.session = self.prefill_session = None


def _providers(ort: Any, device: str, spec: str) -> tuple[list[str], str]:
    available = ort.get_available_providers()
    if device in ("cpu",):
        return ["CPUExecutionProvider"], "cpu"
    if device == "auto":
        if "CUDAExecutionProvider" in available:
            return ["CUDAExecutionProvider", "CPUExecutionProvider"], "cuda"
        return ["CPUExecutionProvider"], "cpu"
    if device.startswith("cuda"):
        if "CUDAExecutionProvider" not in available:
            raise UserError(
                f"model {spec}: --device {device}: this onnxruntime has no CUDA provider (it has {', '.join(available)}); "
                "install onnxruntime-gpu or use --device cpu"
            )
        index = int(device.split(":")[1]) if ":" in device else 0
        return [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"], device
    raise UserError(f"model {spec}: --device {device!r} is not supported by the onnx backend; use auto, cpu or cuda")


def _session(ort: Any, path: Path, options: LoadOptions, providers: list, spec: str) -> Any:
    so = ort.SessionOptions()
    so.log_severity_level = 3  # errors only: ORT's warnings about unused initialisers are not the user's concern
    if options.threads:
        so.intra_op_num_threads = int(options.threads)
    so.inter_op_num_threads = 1
    try:
        return ort.InferenceSession(str(path), sess_options=so, providers=providers)
    except Exception as exc:  # ORT raises its own exception types for every kind of broken file
        first = str(exc).strip().splitlines()[0][:240] if str(exc).strip() else exc.__class__.__name__
        raise UserError(
            f"model {spec}: {path} is not a loadable ONNX graph (truncated, corrupt or using unsupported operators: "
            f"{first}); re-export or re-download it"
        ) from None


def load_onnx_dir(snapshot: Snapshot, spec: str, options: LoadOptions, graph: Path | None = None) -> OnnxModel:
    """Open the graph(s), check the KV-cache signature and the tokenizer; every failure one UserError line."""
    ort = _import_ort()
    from tokenizers import Tokenizer

    directory = snapshot.path
    decode_path, prefill_path = (graph, None) if graph is not None else find_graphs(directory)
    meta_dir = decode_path.parent if (decode_path.parent / "tokenizer.json").is_file() else directory
    tok_path = meta_dir / "tokenizer.json"
    if not tok_path.is_file():
        raise UserError(
            f"model {spec}: no tokenizer.json beside {decode_path.name} in {meta_dir}; add the model's tokenizer.json"
        )
    try:
        tokenizer = Tokenizer.from_file(str(tok_path))
    except Exception as exc:
        raise UserError(
            f"model {spec}: {tok_path} is not a tokenizers file ({exc.__class__.__name__}); re-export it"
        ) from None
    config = _json(meta_dir / "config.json", spec)
    gen_config = _json(meta_dir / "generation_config.json", spec)
    providers, device = _providers(ort, options.device, spec)
    session = _session(ort, decode_path, options, providers, spec)
    sig = read_signature(session, decode_path, needs_past=True)
    prefill = prefill_sig = None
    if prefill_path is not None:
        prefill = _session(ort, prefill_path, options, providers, spec)
        prefill_sig = read_signature(prefill, prefill_path, needs_past=False)
        if prefill_sig.n_layers:
            raise UserError(f"model {spec}: {prefill_path} takes a past; the prefill graph must not")
    heads = sig.heads or config.get("num_key_value_heads") or config.get("num_attention_heads")
    head_dim = sig.head_dim or config.get("head_dim")
    if head_dim is None and config.get("hidden_size") and config.get("num_attention_heads"):
        head_dim = int(config["hidden_size"]) // int(config["num_attention_heads"])
    if not isinstance(heads, int) or not isinstance(head_dim, int):
        raise UserError(
            f"model {spec}: {decode_path} leaves the KV-cache heads/head size open and {meta_dir / 'config.json'} "
            "does not give them (num_key_value_heads, head_dim); add them to config.json"
        )
    vocab = tokenizer.get_vocab_size()
    stop = _ids(config.get("eos_token_id")) + _ids(gen_config.get("eos_token_id"))
    stop += [i for i in (tokenizer.token_to_id(n) for n in _EOS_NAMES) if i is not None][:1]
    stop = [i for i in dict.fromkeys(stop) if 0 <= i < max(vocab, int(config.get("vocab_size") or 0))]
    context = next(
        (
            int(config[k])
            for k in ("max_position_embeddings", "n_positions", "max_seq_len")
            if isinstance(config.get(k), int)
        ),
        2048,
    )
    graphs = [p for p in (prefill_path, decode_path) if p is not None]
    data_files = [p.with_name(p.name + "_data") for p in graphs if p.with_name(p.name + "_data").is_file()]
    info = ModelInfo(
        name=spec,
        spec=spec,
        backend="onnx",
        parameters=int(config["num_parameters"])
        if isinstance(config.get("num_parameters"), int)
        else _parameters(decode_path),
        vocab_size=int(config.get("vocab_size") or vocab),
        context_length=context,
        device=device,
        dtype=str(np.dtype(sig.past_dtype)),
        source=snapshot.repo_id or str(directory.resolve()),
        weights_sha256=files_sha256(graphs + data_files),
        tokenizer_sha256=files_sha256([tok_path]),
        revision=snapshot.revision,
        extra={
            "runtime": "onnxruntime",
            "onnxruntime_version": ort.__version__,
            "providers": session.get_providers(),
            "graphs": [str(p.relative_to(directory)) if p.is_relative_to(directory) else p.name for p in graphs],
            "layout": "prefill + decode graphs" if prefill_path else "one graph (empty past = prefill)",
            "kv_cache_dtype": str(np.dtype(sig.past_dtype)),
            "n_layers": sig.n_layers,
            "kv_heads": heads,
            "head_dim": head_dim,
            "uses_position_ids": sig.uses_positions,
            "intra_op_threads": options.threads or "onnxruntime default (one per physical core)",
            "eos_ids": stop,
            "model_type": config.get("model_type"),
            "sampler": "harness (tinylm_ref.sampling.pick_token on ORT logits)",
        },
    )
    return OnnxModel(session, prefill, sig, prefill_sig, tokenizer, info, stop, heads, head_dim)


def _parameters(path: Path) -> int:
    """Elements in the graph's initialisers (weights), read without loading external data; 0 if onnx is absent."""
    try:
        import onnx
    except ImportError:
        return 0
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception:
        return 0
    return int(sum(int(np.prod(t.dims)) for t in model.graph.initializer if len(t.dims) > 0))


class OnnxBackend:
    """``onnx:`` specs: local export directories and Hub repositories in optimum's layout."""

    name = "onnx"
    option_keys = ("hf_token",)

    def claims(self, spec: str) -> bool:
        """Un-prefixed: a ``.onnx`` file, or a directory with a decoder graph and no transformers weights."""
        path = Path(spec).expanduser()
        if path.is_file():
            return path.suffix == ".onnx"
        if not path.is_dir() or any(path.glob("*.safetensors")) or any(path.glob("pytorch_model*.bin")):
            return False
        try:
            find_graphs(path)
        except UserError:
            return False
        return True

    def _target(self, spec: str) -> str:
        target = spec[len(PREFIX) :] if spec.startswith(PREFIX) else spec
        if not target:
            raise UserError(
                f"model {spec!r}: empty spec; use onnx:/path/to/dir, onnx:FILE.onnx or onnx:ORG/NAME[@REVISION]"
            )
        return target

    def check_options(self, spec: str, options: LoadOptions) -> None:
        """Spec syntax and options, before the run directory exists (needs neither onnxruntime nor the network)."""
        target = self._target(spec)
        if options.dtype not in ("float32", "auto"):
            raise UserError(
                f"model {spec}: --dtype {options.dtype}: an ONNX graph runs in the dtype it was exported in; drop --dtype"
            )
        if options.batch_size > 1:
            raise UserError(f"model {spec}: the onnx backend decodes at batch size 1; drop --batch-size")
        if options.compile:
            raise UserError(f"model {spec}: --compile applies to torch backends; drop it for onnx")
        if is_local_target(target) or target.endswith(".onnx"):
            path = Path(target).expanduser()
            if not path.exists():
                raise UserError(f"model {spec}: {path} does not exist; give an ONNX export directory or .onnx file")
            return
        repo_id, revision = split_repo_spec(target)
        if repo_id.count("/") != 1 or not revision.strip():
            raise UserError(f"model {spec}: use onnx:ORG/NAME[@REVISION] for a Hub repository or a local path")
        check_cached_when_offline(spec, repo_id, revision)  # offline: one line before any run directory

    def load(self, spec: str, options: LoadOptions) -> OnnxModel:
        self.check_options(spec, options)
        _import_ort()
        target = self._target(spec)
        path = Path(target).expanduser()
        if is_local_target(target) or target.endswith(".onnx"):
            if path.is_file():
                return load_onnx_dir(Snapshot(path=path.parent, repo_id=None, revision=None), spec, options, graph=path)
            return load_onnx_dir(Snapshot(path=path, repo_id=None, revision=None), spec, options)
        repo_id, revision = split_repo_spec(target)
        token = options.extra.get("hf_token")
        snapshot = download_snapshot(
            spec, repo_id, revision, allow_patterns=META_FILES + _graph_patterns(MERGED_FILES), token=token
        )
        try:
            find_graphs(snapshot.path)
        except UserError:  # no one-graph export: the older prefill + decode pair
            snapshot = download_snapshot(
                spec, repo_id, revision, allow_patterns=META_FILES + _graph_patterns(SPLIT_FILES), token=token
            )
        return load_onnx_dir(snapshot, spec, options)

    def available(self) -> list[tuple[str, str]]:
        return [
            ("onnx:/path/to/dir", "an ONNX decoder export with its KV cache (tinylm export onnx, optimum)"),
            ("onnx:ORG/NAME[@REVISION]", "an ONNX export on the Hugging Face Hub (graph and JSON files only)"),
        ]


BACKEND = OnnxBackend()


@hookimpl
def register_backends(register: Callable[[Any], None]) -> None:
    register(BACKEND)
