"""Judge bits per byte: the fluency of each generation scored by one fixed judge model.

A model's own perplexity rewards it for liking its own output (the study's 2.5M model is "most
confident" while writing nonsense). Scoring every model's text under the same judge gives one
yardstick. Per sample, the generated tokens are decoded with the model under test, re-encoded with
the judge's own tokenizer (with the judge's BOS) and scored on their own, without the prompt, so
the number depends only on the text: ``judge_bpb = Σ NLL_judge / (ln 2 · UTF-8 bytes of the text)``.
Scoring without the prompt penalises the first words a little for every model alike.

The judge is ``SampleContext.resources["judge"]`` (any backend's ``Model``), loaded by the runner
when the suite names one. ``default=False`` with ``requires=("judge",)``: the runner selects it
exactly when the suite configures a judge (it costs a judge forward pass per sample). The value is
missing when no judge is present or the generation decodes to no text (``n = 0``).
Options: ``window`` and ``overlap``, as for ``heldout_bpb``.
"""

from __future__ import annotations

from collections.abc import Callable

from harness.hookspecs import hookimpl
from harness.metrics._windowed_nll import texts_bits_per_byte
from harness.types import Metric, SampleContext

RESOURCE = "judge"


def _judge_bpb(ctx: SampleContext) -> float | None:
    judge = ctx.resources.get(RESOURCE)
    if judge is None or not ctx.tokens:
        return None
    if ctx.model is None:
        raise ValueError("judge_bpb needs the model under test to decode its generation")
    text = ctx.model.decode(list(ctx.tokens))
    return texts_bits_per_byte(
        [text],
        judge.encode,
        judge.score,
        judge.info.context_length,
        window=ctx.options.get("window"),
        overlap=ctx.options.get("overlap"),
    )


JUDGE_BPB = Metric(
    name="judge_bpb",
    unit="bits/byte",
    higher_is_better=False,
    kind="quality",
    compute=_judge_bpb,
    default=False,
    requires=(RESOURCE,),
    description="Bits per UTF-8 byte of the generated text under the suite's fixed judge model.",
)

METRICS: tuple[Metric, ...] = (JUDGE_BPB,)


@hookimpl
def register_metrics(register: Callable[[Metric], None]) -> None:
    for metric in METRICS:
        register(metric)
