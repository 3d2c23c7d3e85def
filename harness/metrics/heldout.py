"""Held-out bits per byte: how well a model predicts reference text, comparable across tokenizers.

Per-token perplexity is not like for like across vocabularies (a 512-token vocabulary splits the
same story into more, easier tokens than a 2,000-token one). Dividing the total NLL by the text's
UTF-8 bytes instead of its tokens removes the tokenizer from the denominator:
``heldout_bpb = Σ NLL_nats / (ln 2 · Σ bytes)``, lower is better.

Model-level: computed once per model from ``ModelContext.resources["reference_texts"]`` (a list of
strings the runner loads from the suite's ``reference`` field). ``requires=("reference_texts",)``
tells the runner to select it by default only for suites that name reference texts; if it runs
without them anyway, the value is missing rather than an error.

Options (``ModelContext.options``): ``window`` (ids per ``score`` call, default and maximum the
model's context length) and ``overlap`` (context ids re-read by each later window, default half
the window); see ``harness.metrics._windowed_nll``.
"""

from __future__ import annotations

from collections.abc import Callable

from harness.hookspecs import hookimpl
from harness.metrics._windowed_nll import texts_bits_per_byte
from harness.types import Metric, ModelContext

RESOURCE = "reference_texts"


def _heldout_bpb(ctx: ModelContext) -> float | None:
    texts = ctx.resources.get(RESOURCE)
    if texts is None:
        return None
    if isinstance(texts, str):  # a lone string would be scored character by character
        raise TypeError(f"resources[{RESOURCE!r}] must be a list of strings, not a string")
    return texts_bits_per_byte(
        texts,
        ctx.model.encode,
        ctx.model.score,
        ctx.model.info.context_length,
        window=ctx.options.get("window"),
        overlap=ctx.options.get("overlap"),
    )


HELDOUT_BPB = Metric(
    name="heldout_bpb",
    unit="bits/byte",
    higher_is_better=False,
    kind="quality",
    compute_model=_heldout_bpb,
    requires=(RESOURCE,),
    description="Bits per UTF-8 byte of the suite's reference texts under the model (its own tokenizer); "
    "comparable across vocabularies.",
)

METRICS: tuple[Metric, ...] = (HELDOUT_BPB,)


@hookimpl
def register_metrics(register: Callable[[Metric], None]) -> None:
    for metric in METRICS:
        register(metric)
