"""The ``tinylm`` backend: the reference decoder from ``tinylm_ref`` on CPU or CUDA.

Specs (see docs/backends.md):
  ``10m`` ``7m`` ``5m`` ``2.5m``   the bundled checkpoints (else the study's Hub repository)
  ``tinylm:PATH`` or ``PATH``      a checkpoint directory (config.json + weights + tokenizer.json)
  ``tinylm:random/10m``            a randomly initialised preset (seed 0) with the bundled tokenizer
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from tokenizers import Tokenizer

import tinylm_ref
from harness.devices import resolve_device
from harness.errors import UserError, did_you_mean
from harness.hookspecs import hookimpl
from harness.types import MAX_SEED, Generation, LoadOptions, ModelInfo, SamplingParams
from harness.validation import parse_int
from tinylm_ref import sampling
from tinylm_ref.batch import generate_batch
from tinylm_ref.bundled import BUNDLED_DIR
from tinylm_ref.checkpoint import CheckpointError, file_sha256, load_checkpoint
from tinylm_ref.config import PRESETS, load_config_json
from tinylm_ref.decoder import WEIGHT_DTYPES, decode_kernel
from tinylm_ref.model import LLM
from tinylm_ref.sampling import OnToken
from tinylm_ref.tokenizer import EOS, decode, load_tokenizer, special_id

PACKAGE_DIR = Path(tinylm_ref.__file__).resolve().parent
TOKENIZER_DIR = PACKAGE_DIR / "tokenizers"
STUDY_HUB_REPO = "deycoding/deycoding-tiny-language-model"
RANDOM_PREFIX = "random/"


class TinyLMModel:
    """A tinylm_ref network behind the harness Model contract."""

    def __init__(self, model: LLM, tokenizer: Tokenizer, info: ModelInfo) -> None:
        self.model, self.tokenizer, self.info = model, tokenizer, info
        self.weight_dtype = torch.float32  # of the decode step's matrices (--dtype); see tinylm_ref.decoder
        try:
            self.eos_id: int | None = special_id(tokenizer, EOS)
        except ValueError as exc:
            raise UserError(
                f"model {info.name}: {exc}; use a tokenizer trained with tinylm_ref (special tokens {EOS} ...)"
            ) from exc

    def encode(self, text: str) -> list[int]:
        """Token ids (prompts are at most harness.suite.MAX_PROMPT_BYTES: tokenizing one is cheap)."""
        return self.tokenizer.encode(text).ids

    def decode(self, ids: list[int]) -> str:
        return decode(self.tokenizer, ids)

    def generate(
        self,
        prompt_ids: list[int],
        sampling_params: SamplingParams,
        generator: torch.Generator,
        on_token: OnToken | None = None,
    ) -> Generation:
        """``on_token`` (optional, not part of the Model contract) sees each token as it is sampled:
        ``harness serve`` streams through it."""
        try:
            out = sampling.generate(
                self.model,
                prompt_ids,
                sampling_params.max_new_tokens,
                sampling_params.temperature,
                sampling_params.top_k,
                generator,
                self.eos_id,
                self.weight_dtype,
                on_token,
            )
        except ValueError as exc:  # prompt too long for the context
            raise UserError(f"model {self.info.name}: {exc}") from exc
        return out

    def generate_batch(
        self, prompts: list[list[int]], sampling_params: SamplingParams, generators: list[torch.Generator]
    ) -> list[Generation]:
        """Throughput mode: same seeds and (up to rounding) the same tokens as ``generate``."""
        if self.weight_dtype != torch.float32:
            raise UserError(
                f"model {self.info.name}: --dtype {self.info.dtype} applies to batch-1 decoding only; "
                "drop --batch-size or use --dtype float32"
            )
        outs = generate_batch(
            self.model,
            prompts,
            sampling_params.max_new_tokens,
            sampling_params.temperature,
            sampling_params.top_k,
            generators,
            self.eos_id,
        )
        return outs

    @torch.inference_mode()
    def score(self, ids: list[int]) -> list[float]:
        if len(ids) < 2:
            return []
        x = torch.tensor([ids], device=self.model.tok_emb.weight.device)
        logprobs = torch.log_softmax(self.model(x[:, :-1]).float(), dim=-1)
        return (-logprobs[0].gather(1, x[0, 1:, None])[:, 0]).tolist()

    def close(self) -> None:
        """Free the weights (GPU memory first of all); the object is unusable afterwards."""
        self.model = None
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def _tokenizer_sha(tokenizer: Tokenizer) -> str:
    return hashlib.sha256(tokenizer.to_str().encode()).hexdigest()


def _wrap(
    model: LLM,
    tokenizer: Tokenizer,
    spec: str,
    source: str,
    device: torch.device,
    weights_sha: str | None,
    extra: dict | None = None,
) -> TinyLMModel:
    model.to(device).eval()
    if tokenizer.get_vocab_size() > model.config.vocab_size:
        raise UserError(
            f"model {spec}: tokenizer has {tokenizer.get_vocab_size()} tokens but the config's vocab_size "
            f"is {model.config.vocab_size}; use the tokenizer the model was trained with"
        )
    info = ModelInfo(
        name=spec,
        spec=spec,
        backend="tinylm",
        parameters=model.num_parameters(),
        vocab_size=model.config.vocab_size,
        context_length=model.config.max_seq_len,
        device=str(device),
        dtype="float32",
        source=source,
        weights_sha256=weights_sha,
        tokenizer_sha256=_tokenizer_sha(tokenizer),
        extra={"config": model.config.to_dict(), **(extra or {})},
    )
    return TinyLMModel(model, tokenizer, info)


def load_random(preset: str, spec: str, device: torch.device, seed: int = 0) -> TinyLMModel:
    if preset not in PRESETS:
        raise UserError(
            f"model {spec}: unknown preset {preset!r}{did_you_mean(preset, PRESETS)}; choose one of {', '.join(PRESETS)}"
        )
    with torch.random.fork_rng(devices=[]):  # leave the caller's global RNG untouched
        torch.manual_seed(seed)
        model = LLM(PRESETS[preset])
    tokenizer = load_tokenizer(TOKENIZER_DIR / f"{preset}.json")
    weights_sha = hashlib.sha256(f"random:{preset}:seed{seed}".encode()).hexdigest()
    return _wrap(model, tokenizer, spec, f"random/{preset}", device, weights_sha, {"random_init_seed": seed})


def load_directory(path: Path, spec: str, device: torch.device) -> TinyLMModel:
    try:
        ckpt = load_checkpoint(path, device="cpu")
    except CheckpointError as exc:
        raise UserError(f"model {spec}: {exc}") from exc
    except OSError as exc:  # unreadable files, permissions
        raise UserError(f"model {spec}: cannot read {exc.filename or path} ({exc.strerror or exc}); check it") from exc
    return _wrap(ckpt.model, ckpt.tokenizer, spec, str(path.resolve()), device, file_sha256(ckpt.weights_path))


def load_seed_hub(preset: str, spec: str, device: torch.device, options: LoadOptions) -> TinyLMModel:
    """The study's own Hub repository (``.pt`` + tokenizer + config per size), for aliases without a bundled checkpoint."""
    from harness.backends.study_layout import load_study_layout

    try:
        ckpt = load_study_layout(STUDY_HUB_REPO, preset, options)
    except UserError as exc:
        raise UserError(f"model {spec}: no bundled checkpoint in {BUNDLED_DIR}, and {exc}") from exc
    except Exception as exc:  # offline, missing files: one line, with the way out
        raise UserError(
            f"model {spec}: no bundled checkpoint in {BUNDLED_DIR} and the study's Hub repo {STUDY_HUB_REPO} "
            f"is unreachable ({exc.__class__.__name__}); train one with 'tinylm train' or go online"
        ) from exc
    wrapped = _wrap(
        ckpt.model,
        ckpt.tokenizer,
        spec,
        ckpt.source,
        device,
        ckpt.weights_sha256,
        {"files": ckpt.files, "notes": ckpt.notes},
    )
    wrapped.info.revision = ckpt.revision
    return wrapped


def is_checkpoint_dir(path: Path) -> bool:
    """A tinylm_ref checkpoint directory; transformers directories (config with ``model_type``) are not."""
    config = path / "config.json"
    if not (path.is_dir() and config.is_file() and (path / "tokenizer.json").is_file()):
        return False
    try:
        data = load_config_json(config)
    except ValueError:
        return True  # let the loader report the broken config with its file name
    return not (isinstance(data, dict) and "model_type" in data)


class TinyLMBackend:
    name = "tinylm"
    #: ``--model-option`` keys this backend reads (see harness.validation.check_option_keys)
    option_keys = ("seed", "study_layout")

    def claims(self, spec: str) -> bool:
        return spec.lower() in PRESETS or is_checkpoint_dir(Path(spec))

    def check_options(self, spec: str, options: LoadOptions) -> str:
        """Refuse specs and option combinations this backend cannot honour (called before a run starts,
        so a bad spec leaves nothing behind, and again at load). Returns the dtype name to use.

        Spec syntax is checked fully here: a preset that does not exist, ``random/`` with a bad preset or
        seed, a path that is not a directory. What is *inside* a checkpoint directory is checked at load.
        """
        self._check_spec(spec, options)
        dtype_name = "float32" if options.dtype == "auto" else str(options.dtype).lower()
        if dtype_name not in WEIGHT_DTYPES:
            raise UserError(
                f"model {spec}: --dtype {options.dtype!r} is not supported by the tinylm backend; "
                f"use {' or '.join(WEIGHT_DTYPES)}"
            )
        if options.compile and dtype_name != "float32":
            raise UserError(f"model {spec}: --compile runs the float32 decode step; drop --compile or --dtype")
        if options.batch_size > 1 and dtype_name != "float32":
            raise UserError(
                f"model {spec}: --dtype {dtype_name} applies to batch-1 decoding only; "
                "drop --batch-size or use --dtype float32"
            )
        return dtype_name

    def load(self, spec: str, options: LoadOptions) -> TinyLMModel:
        dtype_name = self.check_options(spec, options)
        model = self._load(spec, options)
        model.weight_dtype = WEIGHT_DTYPES[dtype_name]
        model.info.dtype = dtype_name
        if options.compile:
            model.model.compile_decode()
            model.info.extra["compiled"] = True
            kernel = {"kernel": "compiled", "reason": "--compile"}
        elif options.batch_size > 1:
            kernel = {"kernel": "batched", "reason": f"--batch-size {options.batch_size} decodes through LLM.forward"}
        else:
            kernel = decode_kernel(model.model, model.weight_dtype)
        model.info.extra["decode_kernel"] = kernel  # which step produced the timings (docs/performance.md)
        return model

    def _check_spec(self, spec: str, options: LoadOptions) -> None:
        target = spec.split(":", 1)[1] if spec.startswith("tinylm:") else spec
        if not target:
            raise UserError(
                f"model {spec!r}: empty spec; use a preset ({', '.join(PRESETS)}), tinylm:PATH or tinylm:random/PRESET"
            )
        if target.startswith(RANDOM_PREFIX):
            preset = target[len(RANDOM_PREFIX) :].lower()
            if preset not in PRESETS:
                raise UserError(
                    f"model {spec}: unknown preset {preset!r}{did_you_mean(preset, PRESETS)}; "
                    f"choose one of {', '.join(PRESETS)}"
                )
            _seed(spec, options)
            return
        if target.lower() in PRESETS:
            return
        path = Path(target).expanduser()
        if not path.is_dir():
            what = "is not a directory" if path.exists() else "does not exist"
            raise UserError(
                f"model {spec}: {path} {what}; give a checkpoint directory (config.json + weights + tokenizer.json), "
                f"a preset ({', '.join(PRESETS)}) or tinylm:random/PRESET{did_you_mean(target, list(PRESETS))}"
            )

    def _load(self, spec: str, options: LoadOptions) -> TinyLMModel:
        device = resolve_device(options.device, spec)
        target = spec.split(":", 1)[1] if spec.startswith("tinylm:") else spec
        if target.startswith(RANDOM_PREFIX):
            return load_random(target[len(RANDOM_PREFIX) :].lower(), spec, device, _seed(spec, options))
        if target.lower() in PRESETS:
            bundled = BUNDLED_DIR / target.lower()
            if is_checkpoint_dir(bundled):
                return load_directory(bundled, spec, device)
            return load_seed_hub(target.lower(), spec, device, options)
        path = Path(target).expanduser()
        if path.is_dir():
            return load_directory(path, spec, device)
        raise UserError(
            f"model {spec}: not a preset ({', '.join(PRESETS)}), a checkpoint directory or tinylm:random/PRESET"
            f"{did_you_mean(target, list(PRESETS))}"
        )

    def available(self) -> list[tuple[str, str]]:
        rows = []
        for preset in PRESETS:
            bundled = BUNDLED_DIR / preset
            where = (
                f"bundled checkpoint {bundled}"
                if is_checkpoint_dir(bundled)
                else f"study Hub repo {STUDY_HUB_REPO} (network)"
            )
            rows.append((preset, where))
        rows += [(f"tinylm:random/{p}", "random weights, bundled tokenizer") for p in PRESETS]
        rows.append(("tinylm:PATH", "any checkpoint directory (config.json + weights + tokenizer.json)"))
        return rows


def _seed(spec: str, options: LoadOptions) -> int:
    """``--model-option seed=N`` for random weights: an integer from 0 to MAX_SEED."""
    return parse_int(f"model {spec}: --model-option seed", options.extra.get("seed", 0), 0, MAX_SEED)


@hookimpl
def register_backends(register) -> None:
    register(TinyLMBackend())
