"""The thread policy: as many torch threads as the CPUs other processes leave free, decided per sample.

Why (issue 15, measured by ``benchmarks/contention.py``; docs/performance.md has the tables): torch's
CPU wheel uses GNU OpenMP, whose worker threads spin-wait between parallel regions. On a 2-core machine
two harness runs with 2 threads each spin against each other and decode at a few percent of their idle
speed (26% and 7% of idle with one and two competing copies for 10m; the issue saw 40x on Intel). The
static fixes cost idle speed: ``OMP_WAIT_POLICY=PASSIVE`` or ``GOMP_SPINCOUNT=0`` lose 28-60% idle, and
one thread loses 21-26%.

So the harness keeps the fast default (all threads, spinning) while the CPUs are free and drops to the
threads the other processes leave free when they are not. Between two samples it reads how much CPU
*other* processes used since the last check (``/proc/stat`` busy time over the CPUs this process may
use, minus this process's own CPU time; :mod:`harness.contention`), and sets
``torch.set_num_threads(round(free CPUs))`` within 1..the configured count. Two harness runs on two
cores thus settle at one thread each, and a run returns to two threads as soon as the other ends.

What a thread change can move: the order of a few floating-point reductions, so a token's log-prob may
differ in its last bit (4.8e-7 nats measured on random float32 weights; none on the bundled checkpoints,
whose bf16-origin weights sum exactly). Sampled tokens were identical in every comparison we ran (tests/
harness/test_threads.py). Speed is what it changes, so the runner records per model how many samples ran
at each count, next to the contention record that flags the timing. ``HARNESS_THREAD_POLICY=fixed`` turns
the policy off for bit-for-bit reproducible log-probs on a busy machine.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any

from harness.contention import CounterSnapshot, Layout, clock_ticks

POLICY_ENV = "HARNESS_THREAD_POLICY"
POLICIES = ("adaptive", "fixed")
#: /proc/stat counts in 10 ms ticks per CPU, so a window's others-share is off by up to ~2 ticks per CPU:
#: ±20% over 0.1 s on 2 CPUs, enough to drop a thread on an idle machine. Over 0.25 s it is ±8%, under the
#: rounding margin below. Shorter windows keep accumulating (the decision waits a sample or two).
MIN_WINDOW_S = 0.25
#: A CPU counts as free when others used less than this share of it beyond the whole CPUs they took:
#: with ``round(free + 0.3)`` a competitor using 0.7 of a core or more takes that core.
ROUNDING = 0.3


def policy_name() -> str:
    """The policy in force: ``HARNESS_THREAD_POLICY`` (adaptive when unset)."""
    value = os.environ.get(POLICY_ENV, "adaptive").strip().lower() or "adaptive"
    return value if value in POLICIES else "adaptive"


def target_threads(others_fraction: float, usable_cpus: float, max_threads: int) -> int:
    """Threads to use when other processes took ``others_fraction`` of ``usable_cpus`` CPUs."""
    free = usable_cpus * (1.0 - min(max(others_fraction, 0.0), 1.0))
    return max(1, min(max_threads, int(free + ROUNDING)))


@dataclass
class ThreadGovernor:
    """Call :meth:`check` between samples; it adjusts ``torch.set_num_threads`` and keeps a tally."""

    max_threads: int
    policy: str = "adaptive"
    layout: Layout | None = None
    current: int = 0
    switches: int = 0
    last_others: float | None = None  # the share others used in the window of the last decision
    samples_at: dict[int, int] = field(default_factory=dict)
    _last: CounterSnapshot | None = None

    def __post_init__(self) -> None:
        import torch

        self.current = self.max_threads
        torch.set_num_threads(self.current)
        if self.policy == "adaptive" and self.max_threads > 1:
            self.layout = self.layout or Layout.detect()
            if self.layout.source != "proc_stat" or not self.layout.usable_cpus:
                self.policy = "fixed"  # nothing to measure with: behave as before
        else:
            self.policy = "fixed"

    def others_fraction(self) -> float | None:
        """Share of our usable CPUs other processes used since the last call (None: window too short)."""
        if self._last is not None and time.perf_counter() - self._last.wall < MIN_WINDOW_S:
            return None  # too short to judge: skip reading /proc/stat (a tenth of a millisecond per sample)
        snap = CounterSnapshot.take(self.layout)
        last, self._last = self._last, snap
        if last is None or snap.busy_ticks is None or last.busy_ticks is None:
            return None
        if snap.wall - last.wall < MIN_WINDOW_S:
            self._last = last  # keep accumulating from the older snapshot
            return None
        capacity_ticks = (snap.all_ticks or 0) - (last.all_ticks or 0)
        if capacity_ticks <= 0:
            return None
        hz = clock_ticks()
        others_s = (snap.busy_ticks - last.busy_ticks) / hz - (snap.process_cpu - last.process_cpu)
        return max(0.0, others_s / (capacity_ticks / hz))

    def check(self, samples: int = 1) -> int:
        """Before the next ``samples`` samples: adjust the thread count; returns the count in force."""
        if self.policy == "adaptive":
            others = self.others_fraction()
            if others is not None:
                self.last_others = others
                wanted = target_threads(others, self.layout.usable_cpus or 1.0, self.max_threads)
                if wanted != self.current:
                    import torch

                    torch.set_num_threads(wanted)
                    self.current, self.switches = wanted, self.switches + 1
        self.samples_at[self.current] = self.samples_at.get(self.current, 0) + samples
        return self.current

    def restore(self) -> None:
        """Leave torch as configured (the next model starts from the full count)."""
        import torch

        torch.set_num_threads(self.max_threads)

    def summary(self) -> dict[str, Any]:
        """What the manifest records per model: the policy, the ceiling, samples per thread count."""
        return {
            "policy": self.policy,
            "max_threads": self.max_threads,
            "samples_at": {str(k): v for k, v in sorted(self.samples_at.items(), reverse=True)},
            "switches": self.switches,
        }


def apply_thread_policy(threads: int | None = None) -> ThreadGovernor:
    """A governor for this process (``threads``: the ceiling, default torch's current count).

    ``benchmarks/contention.py`` measures this as its ``candidate`` policy, calling :meth:`check`
    before each generation exactly as the runner does.
    """
    import torch

    return ThreadGovernor(max_threads=threads or torch.get_num_threads(), policy=policy_name())
