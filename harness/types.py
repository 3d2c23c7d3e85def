"""The contracts between the runner and its plugins: backends, models, generations and metrics.

These are the only types a plugin author needs; everything else in ``harness`` is machinery.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from tinylm_ref.generation import Generation as _ReferenceGeneration

if TYPE_CHECKING:  # annotations only: plugin contracts must not cost a torch import
    import torch


#: Valid ranges shared by suites, CLI options and backends, so every front door says the same thing.
MAX_SEED = 2**63 - 1  # seeds are 0..MAX_SEED (torch generators take 64 bits; derive_seed makes 63)
MAX_NEW_TOKENS = 100_000
MAX_TOP_K = 2**31 - 1
MAX_THREADS = 1024
MAX_BATCH_SIZE = 4096


@dataclass(frozen=True)
class SamplingParams:
    """Fixed sampling settings of a suite; the study's are temperature 0.8, top-k 50, 256 new tokens."""

    temperature: float = 0.8
    top_k: int | None = 50
    max_new_tokens: int = 256
    seed: int = 1234


@dataclass
class LoadOptions:
    """How to load a model; backends ignore what does not apply to them."""

    device: str = "auto"  # auto | cpu | cuda | cuda:N
    dtype: str = "float32"
    threads: int | None = None
    trust_remote_code: bool = False
    compile: bool = False
    batch_size: int = 1  # prompts per generate_batch call; lets a backend refuse what it cannot batch at load
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class ModelInfo:
    """What a run records about a model, so results can be traced to exact weights."""

    name: str  # the label used in tables (usually the spec the user typed)
    spec: str  # the model spec as given, e.g. "10m", "tinylm:./ckpt", "hf:org/name@rev"
    backend: str
    parameters: int
    vocab_size: int
    context_length: int
    device: str
    dtype: str
    source: str  # resolved path or hub id
    weights_sha256: str | None = None
    tokenizer_sha256: str | None = None
    revision: str | None = None  # resolved hub commit, when loaded from the hub
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


#: One sampled continuation and its timing, as every backend must report it (see docs/metrics.md):
#: ``tokens`` excludes the EOS that ended generation; ``logprobs[i]`` is log p(tokens[i]) under the raw
#: distribution (temperature 1, no top-k); ``token_times_ns[i]`` is ``time.perf_counter_ns()`` when
#: ``tokens[i]`` was on the host. One class for every backend, shared with the reference sampler.
Generation = _ReferenceGeneration


class SampleFailed(Exception):
    """One sample could not be generated (a served model's stream broke, a read timed out, a 5xx).

    A backend raises it for a failure that belongs to this sample alone: the runner records nothing for
    the sample, goes on with the others, ends the model ``failed`` and ``harness run --resume`` retries
    the missing samples. Anything else a backend raises fails the whole model.
    """


@runtime_checkable
class Model(Protocol):
    """A loaded model, ready to generate. Implemented by backends."""

    info: ModelInfo
    eos_id: int | None

    def encode(self, text: str) -> list[int]:
        """Prompt text to token ids, including any BOS the model was trained with."""

    def decode(self, ids: list[int]) -> str:
        """Token ids to text, special tokens dropped."""

    def generate(self, prompt_ids: list[int], sampling: SamplingParams, generator: torch.Generator) -> Generation:
        """Sample one continuation at batch size 1, timing it as docs/metrics.md specifies."""

    def score(self, ids: list[int]) -> list[float]:
        """Per-token negative log-likelihood (nats) of ``ids[1:]`` given the preceding ids.

        ``len(ids)`` is at most ``info.context_length``; callers window longer texts.
        """

    def close(self) -> None:
        """Release memory (GPU) before the next model loads."""


@runtime_checkable
class Backend(Protocol):
    """Turns a model spec string into a loaded Model."""

    name: str  # the spec prefix, e.g. "tinylm" for "tinylm:..."

    def claims(self, spec: str) -> bool:
        """True if this backend handles an un-prefixed spec (an alias or a path)."""

    def load(self, spec: str, options: LoadOptions) -> Model:
        """Load the model; raise harness.errors.UserError with a one-line fix for bad specs."""

    def available(self) -> list[tuple[str, str]]:
        """(spec, description) pairs that resolve right now, for ``harness models``."""

    # Optional: ``check_options(spec, options) -> Any`` raises UserError for a bad spec syntax or options
    # this backend cannot honour; ``harness run`` calls it before creating the run directory (see
    # docs/plugins.md). Optional too: ``option_keys: tuple[str, ...]``, the ``--model-option`` keys it
    # reads (harness.validation.check_option_keys refuses others). Neither is part of the Protocol, so
    # backends without them still satisfy ``isinstance(x, Backend)``.


@dataclass
class SampleContext:
    """Everything a sample-level metric may look at."""

    generation: Generation
    prompt_ids: list[int]
    model: Model | None
    sampling: SamplingParams
    options: dict[str, Any] = field(default_factory=dict)  # the metric's options from the suite
    resources: dict[str, Any] = field(default_factory=dict)  # shared objects, e.g. "judge": Model

    @property
    def tokens(self) -> list[int]:
        return self.generation.tokens


@dataclass
class ModelContext:
    """Everything a model-level metric may look at (computed once per model per run)."""

    model: Model
    records: list[dict[str, Any]]
    options: dict[str, Any] = field(default_factory=dict)
    resources: dict[str, Any] = field(default_factory=dict)  # e.g. "reference_texts": list[str]


@dataclass(frozen=True)
class Metric:
    """A metric plugin. Exactly one of ``compute`` (per sample) or ``compute_model`` (per model) is set.

    ``higher_is_better`` travels into every result file so a gate knows what a regression is;
    ``None`` means the metric has no better direction (for example tokens generated).
    Return ``None`` or NaN for "missing" (for example a ratio with n = 0); raise for a real error.
    """

    name: str
    unit: str
    higher_is_better: bool | None
    description: str
    compute: Callable[[SampleContext], float | None] | None = None
    compute_model: Callable[[ModelContext], float | None] | None = None
    default: bool = True  # on when a suite does not list its metrics
    kind: Literal["timing", "quality", "count"] = "quality"  # gates treat timing as run-replicated
    requires: tuple[str, ...] = ()  # resources it needs: "reference_texts" (suite 'reference'), "judge" (suite 'judge')

    def __post_init__(self) -> None:
        if (self.compute is None) == (self.compute_model is None):
            raise ValueError(f"metric {self.name!r}: set exactly one of compute / compute_model")

    @property
    def level(self) -> str:
        return "sample" if self.compute is not None else "model"


def as_float(value: float | None) -> float | None:
    """Normalise a metric value for JSON: NaN and inf become None (missing)."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


@dataclass(frozen=True)
class FinishedRun:
    """What a tracker receives: a finished (or interrupted) run directory and its parsed records.

    ``manifest`` and ``summary`` are the JSON objects of manifest.json and summary.json; the files
    themselves (samples.jsonl, report.html...) are in ``path`` for trackers that upload artifacts.
    """

    path: Path
    manifest: dict[str, Any]
    summary: dict[str, Any]
    report: Path | None  # report.html when one was written


@runtime_checkable
class Tracker(Protocol):
    """Logs runs to an experiment tracker (MLflow, W&B, the Hub...); registered with ``register_trackers``.

    ``log_run`` returns one line for the terminal (where the run went, e.g. an MLflow run id). It is
    called after every result file is written, so a tracker that fails costs a warning, never results.
    """

    name: str
    description: str

    def log_run(self, run: FinishedRun) -> str: ...
