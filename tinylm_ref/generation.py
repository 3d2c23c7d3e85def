"""The record of one generated continuation, shared by the reference decoder and the harness.

It lives apart from ``sampling`` (which needs torch) so that code which only reads or builds records,
such as the harness's plugin contracts, can import it without importing torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Generation:
    """One generated continuation. ``tokens`` excludes the EOS token that ended it, if any."""

    tokens: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)  # log p(g_i) under the raw distribution
    token_times_ns: list[int] = field(default_factory=list)  # perf_counter_ns when g_i was on the host
    start_ns: int = 0  # immediately before the prefill forward pass
    end_ns: int = 0  # when the last token (or EOS) was on the host
    eos_hit: bool = False
    stop_reason: str = "max_new_tokens"  # eos | max_new_tokens | context | nonfinite
    nonfinite: bool = False  # the model produced NaN/inf logits; generation stopped there
    first_token_ns: int | None = None  # when the first sampled token (EOS included) was on the host
