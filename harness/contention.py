"""Was the CPU busy while we timed? A probe around a timing window that says how much of the machine others used.

Why: on a 2-core machine two ``harness run`` processes with 2 OpenMP threads each slowed each other ~40x
(issue 15), and even a well-behaved competitor costs a batch-1 decode loop a share of its speed. A latency
number taken on a busy CPU must say so, so that nobody reads it as the model's speed.

``probe = ContentionProbe.start()`` ... ``record = probe.stop()`` returns a JSON-serialisable dict:

- ``wall_s``, ``process_cpu_s`` (this process, all threads: ``time.process_time()``), ``cpu_per_wall``;
- ``loadavg_before`` / ``loadavg_after``: the 1-minute load average at start and stop (context only: it is a
  one-minute exponential average, so it lags a window of a few seconds and is not used to decide);
- ``steal_fraction``: /proc/stat steal ticks over all ticks of the CPUs we may run on (the hypervisor ran
  someone else while our virtual CPU wanted to run); None where the kernel does not report steal;
- ``others_cpu_fraction``: CPU time used by every process except this one (other users, other harness
  copies, our own child processes) over ``wall_s × usable_cpus``; ``usable_cpus``; ``source``;
- ``contended`` (bool) and ``reason`` (one short sentence), see the rule below.

Where the counts come from (``source``)
---------------------------------------
``usable_cpus`` is the CPUs this process may run on (``os.sched_getaffinity``), capped by the cgroup's CPU
quota (v2 ``cpu.max``, v1 ``cpu.cfs_quota_us / cpu.cfs_period_us``).

- ``proc_stat`` (preferred): busy ticks (user + nice + system + irq + softirq) summed over the per-CPU lines of
  /proc/stat for exactly the CPUs in our affinity mask. Where /proc/stat is host-wide (a container on a
  cpuset), restricting to our CPUs counts every process that competes for them, inside or outside our
  container, which the container's own cgroup accounting would miss. Used whenever no CPU quota is tighter
  than the affinity mask.
- ``cgroup``: where a CPU quota is tighter than the affinity mask (a ``--cpus=2`` container on a large host),
  /proc/stat's CPUs are not our capacity, so the container's usage at the cgroup root visible inside it
  (v2 ``cpu.stat usage_usec``, v1 ``cpuacct.usage``) minus this process's CPU is used instead: it reflects the
  other processes in the container; other containers on the host are invisible to it (they only make us
  slower), which is why /proc/stat restricted to our CPUs is preferred wherever it describes our capacity.
- ``None``: not Linux, or neither readable: every measured field None, ``contended`` False, reason
  "not measured".

On this project's build machine (a Firecracker VM, 2 vCPUs, cgroup v1 with every process in the root group,
no quota) /proc/stat has exactly two ``cpuN`` lines, equal to ``os.sched_getaffinity`` and ``os.cpu_count()``:
it describes the VM, i.e. everything that can compete with us inside it; the root ``cpuacct.usage`` moved
with it (same total CPU time to within tick rounding), so both sources agree there. Contention from other
VMs on the same host shows up only as steal.

The decision rule
-----------------
``contended = others_cpu_fraction >= 0.05 or steal_fraction >= 0.05``, judged only when the window holds at
least ``MIN_TICKS`` = 100 clock ticks of capacity (0.5 s on 2 CPUs at 100 Hz, where one tick of rounding per
CPU is at most 2% of the window); shorter windows are reported "too short to measure" and not flagged (the
cgroup source counts nanoseconds and has no such limit).

Why 5%, from readings of this probe on the 2-vCPU build machine with real competitors (pure-Python busy
loops in other processes; the tok/s effects are rough, the machine was shared while measuring):

- The floor: this process alone (sleeping, or decoding with 2 threads) read 0.2-0.6% per 3-second window
  (2.8% once, with a shell command running); kernel threads, the sandbox agent and shells are all there is.
  5% stays clear of that, so a quiet machine is not flagged.
- One always-busy competitor reads 50% (while we sleep) and 36-38% against a 2-thread decode loop, two read
  100% / ~52%: a decode loop's spinning libgomp threads hold the CPUs, so *measured* others understate what
  the competitor wanted. A competitor busy 10% of the time reads 5% alone but only 3-5% against the decode
  loop, and one busy 20% of the time reads ~6% while costing the 5m decode loop roughly a quarter of its
  tokens/s. So by the time others reach 5%, the timing has already lost more than the ±10% run-to-run
  spread of a quiet machine (docs/performance.md); a 10% threshold missed such competitors.
- Even without spinning, losing a fraction f of the machine slows a compute-bound loop by >= 1/(1-f), and a
  memory-bound one (10m, 7m stream more weights than the cache holds) shares the memory bandwidth with
  anything running: the rule counts others against the whole usable capacity, not only the CPUs our
  threads happened to run on, so a competitor "on the other core" of a 1-thread run is still flagged.
- Steal uses the same 5%: it is capacity the hypervisor withheld while our CPUs wanted to run (0-0.8% here).

``flag_text(record)`` gives a short label for tables ("" when the window was quiet or not measured).
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

OTHERS_THRESHOLD = 0.05  # share of usable CPU capacity used by other processes that makes a window contended
STEAL_THRESHOLD = 0.05  # share of our CPUs' time the hypervisor gave to someone else
MIN_TICKS = 100  # capacity (CPUs × clock ticks) a proc_stat window needs before it is judged

PROC_STAT = Path("/proc/stat")
CGROUP_ROOT = Path("/sys/fs/cgroup")


# ------------------------------------------------------------------ reading the counters
def _read_proc_stat(path: Path = PROC_STAT) -> dict[int, list[int]] | None:
    """Per-CPU tick counters: {cpu id: [user, nice, system, idle, iowait, irq, softirq, steal, ...]}."""
    try:
        text = path.read_text()
    except OSError:
        return None
    cpus: dict[int, list[int]] = {}
    for line in text.splitlines():
        if line.startswith("cpu") and line[3:4].isdigit():
            name, *values = line.split()
            cpus[int(name[3:])] = [int(v) for v in values]
    return cpus or None


def _busy_steal_total(cpus: dict[int, list[int]], which: frozenset[int]) -> tuple[int, int | None, int]:
    """(busy, steal, all) ticks summed over ``which``; busy = user+nice+system+irq+softirq (guest is in user)."""
    busy = total = 0
    steal: int | None = 0
    for cpu in which:
        v = cpus.get(cpu)
        if v is None:
            continue
        busy += v[0] + v[1] + v[2] + (v[5] + v[6] if len(v) > 6 else 0)
        total += sum(v[:8])
        if len(v) > 7 and steal is not None:
            steal += v[7]
        else:
            steal = None
    return busy, steal, total


def _cgroup_usage_s(root: Path = CGROUP_ROOT) -> float | None:
    """CPU seconds used by every process in the cgroup visible as the root inside this container."""
    try:
        for line in (root / "cpu.stat").read_text().splitlines():  # cgroup v2
            if line.startswith("usage_usec "):
                return int(line.split()[1]) / 1e6
    except (OSError, ValueError):
        pass
    try:
        return int((root / "cpuacct" / "cpuacct.usage").read_text()) / 1e9  # cgroup v1
    except (OSError, ValueError):
        return None


def _cgroup_quota_cpus(root: Path = CGROUP_ROOT) -> float | None:
    """The cgroup's CPU quota in CPUs (quota / period), or None when unlimited or unreadable."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]  # v2: "max 100000" or "200000 100000"
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota_us = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period_us = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return None if quota_us <= 0 else quota_us / period_us
    except (OSError, ValueError, ZeroDivisionError):
        return None


def _affinity() -> frozenset[int]:
    try:
        return frozenset(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return frozenset(range(os.cpu_count() or 1))


def _loadavg() -> float | None:
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


@dataclass(frozen=True)
class Layout:
    """Which counters describe our capacity on this machine (decided once per probe)."""

    source: str | None  # "proc_stat", "cgroup" or None
    cpus: frozenset[int]  # the CPUs we may run on
    usable_cpus: float | None
    proc_stat_cpus: int | None  # cpuN lines in /proc/stat (host-wide when larger than len(cpus))
    quota_cpus: float | None

    @classmethod
    def detect(cls) -> Layout:
        if not sys.platform.startswith("linux"):
            return cls(None, frozenset(), None, None, None)
        cpus, quota = _affinity(), _cgroup_quota_cpus()
        usable = float(len(cpus)) if quota is None else min(float(len(cpus)), quota)
        stat = _read_proc_stat()
        proc_stat_cpus = len(stat) if stat else None
        if stat and (quota is None or quota >= len(cpus) - 1e-6) and cpus <= stat.keys():
            source: str | None = "proc_stat"
        elif _cgroup_usage_s() is not None:
            source = "cgroup"
        else:
            source = None
        return cls(source, cpus, usable, proc_stat_cpus, quota)


@dataclass
class CounterSnapshot:
    wall: float
    process_cpu: float
    busy_ticks: int | None = None
    steal_ticks: int | None = None
    all_ticks: int | None = None
    cgroup_s: float | None = None

    @classmethod
    def take(cls, layout: Layout) -> CounterSnapshot:
        snap = cls(time.perf_counter(), time.process_time())
        if layout.source == "proc_stat":
            stat = _read_proc_stat()
            if stat:
                snap.busy_ticks, snap.steal_ticks, snap.all_ticks = _busy_steal_total(stat, layout.cpus)
        elif layout.source == "cgroup":
            snap.cgroup_s = _cgroup_usage_s()
        return snap


@dataclass
class ContentionRecord:
    """What one timing window saw; ``as_dict()`` is what a manifest stores."""

    wall_s: float
    process_cpu_s: float
    cpu_per_wall: float | None
    loadavg_before: float | None
    loadavg_after: float | None
    steal_fraction: float | None
    others_cpu_fraction: float | None
    usable_cpus: float | None
    source: str | None
    contended: bool
    reason: str
    detail: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class ContentionProbe:
    """Counters at ``start()``, accumulated over active spans (``pause()``/``resume()``), judged at ``stop()``.

    Cheap (one /proc/stat read and ``process_time()`` per edge, tens of microseconds), so it can wrap a whole
    model's generation loop, or pause around work that is not timed (metrics, writing samples).
    """

    def __init__(self, layout: Layout | None = None) -> None:
        self.layout = layout or Layout.detect()
        self._loadavg_before = _loadavg()
        self._span_start: CounterSnapshot | None = None
        self._wall = self._cpu = 0.0
        self._busy = self._steal = self._all = 0
        self._cgroup = 0.0
        self._steal_known = True
        self._complete = True  # every span had its counters at both edges

    @classmethod
    def start(cls, layout: Layout | None = None) -> ContentionProbe:
        probe = cls(layout)
        probe.resume()
        return probe

    @property
    def running(self) -> bool:
        return self._span_start is not None

    def resume(self) -> None:
        """Open a span (no-op when one is open)."""
        if self._span_start is None:
            self._span_start = CounterSnapshot.take(self.layout)

    def pause(self) -> None:
        """Close the open span and add its deltas (no-op when paused)."""
        a = self._span_start
        if a is None:
            return
        b = CounterSnapshot.take(self.layout)
        self._span_start = None
        self._wall += b.wall - a.wall
        self._cpu += b.process_cpu - a.process_cpu
        if self.layout.source == "proc_stat":
            if a.busy_ticks is None or b.busy_ticks is None or a.all_ticks is None or b.all_ticks is None:
                self._complete = False
                return
            self._busy += b.busy_ticks - a.busy_ticks
            self._all += b.all_ticks - a.all_ticks
            if a.steal_ticks is None or b.steal_ticks is None:
                self._steal_known = False
            else:
                self._steal += b.steal_ticks - a.steal_ticks
        elif self.layout.source == "cgroup":
            if a.cgroup_s is None or b.cgroup_s is None:
                self._complete = False
                return
            self._cgroup += b.cgroup_s - a.cgroup_s

    def stop(self) -> dict[str, Any]:
        """Close the window and return the record as a JSON-serialisable dict."""
        return self.stop_record().as_dict()

    def stop_record(self) -> ContentionRecord:
        self.pause()
        return judge(
            self.layout,
            wall_s=self._wall,
            process_cpu_s=self._cpu,
            busy_ticks=self._busy if self.layout.source == "proc_stat" and self._complete else None,
            all_ticks=self._all if self.layout.source == "proc_stat" and self._complete else None,
            steal_ticks=self._steal if self._steal_known and self._complete else None,
            cgroup_s=self._cgroup if self.layout.source == "cgroup" and self._complete else None,
            loadavg_before=self._loadavg_before,
            loadavg_after=_loadavg(),
        )


def clock_ticks() -> int:
    try:
        return int(os.sysconf("SC_CLK_TCK"))
    except (AttributeError, ValueError, OSError):
        return 100


def judge(
    layout: Layout,
    *,
    wall_s: float,
    process_cpu_s: float,
    busy_ticks: int | None,
    all_ticks: int | None,
    steal_ticks: int | None,
    cgroup_s: float | None,
    loadavg_before: float | None,
    loadavg_after: float | None,
) -> ContentionRecord:
    """Turn a window's deltas into fractions and the decision (the rule in the module docstring)."""
    hz = clock_ticks()
    detail: dict[str, Any] = {
        "proc_stat_cpus": layout.proc_stat_cpus,
        "affinity_cpus": len(layout.cpus) or None,
        "quota_cpus": layout.quota_cpus,
        "threshold": OTHERS_THRESHOLD,
        "steal_threshold": STEAL_THRESHOLD,
    }
    base = {
        "wall_s": wall_s,
        "process_cpu_s": process_cpu_s,
        "cpu_per_wall": process_cpu_s / wall_s if wall_s > 0 else None,
        "loadavg_before": loadavg_before,
        "loadavg_after": loadavg_after,
        "usable_cpus": layout.usable_cpus,
        "source": layout.source,
    }
    usable = layout.usable_cpus or 0.0
    others_s: float | None = None
    steal: float | None = None
    short = False
    if layout.source == "proc_stat" and busy_ticks is not None and all_ticks is not None:
        others_s = busy_ticks / hz - process_cpu_s
        if steal_ticks is not None:
            steal = steal_ticks / all_ticks if all_ticks > 0 else 0.0
        short = wall_s * hz * usable < MIN_TICKS
        detail["busy_s"] = busy_ticks / hz
    elif layout.source == "cgroup" and cgroup_s is not None:
        others_s = cgroup_s - process_cpu_s
        detail["cgroup_usage_s"] = cgroup_s
    if others_s is None or wall_s <= 0 or usable <= 0:
        return ContentionRecord(
            **base, steal_fraction=None, others_cpu_fraction=None, contended=False, reason="not measured", detail=detail
        )
    detail["others_cpu_s_raw"] = others_s
    others = max(0.0, others_s) / (wall_s * usable)  # tick rounding can make a quiet window slightly negative
    cpus = f"{usable:g} CPU" + ("" if usable == 1 else "s")
    if short:
        contended, reason = False, f"window too short to measure ({1e3 * wall_s:.0f} ms)"
    elif others >= OTHERS_THRESHOLD:
        contended, reason = True, f"other processes used {100 * others:.0f}% of {cpus} during timing"
    elif steal is not None and steal >= STEAL_THRESHOLD:
        contended, reason = True, f"the hypervisor took {100 * steal:.0f}% of {cpus} (steal) during timing"
    else:
        contended = False
        reason = f"other processes used {100 * others:.0f}% of {cpus} (below {100 * OTHERS_THRESHOLD:.0f}%)"
    return ContentionRecord(
        **base,
        steal_fraction=steal,
        others_cpu_fraction=others,
        contended=contended,
        reason=reason,
        detail=detail,
    )


def flag_text(record: dict[str, Any] | ContentionRecord | None) -> str:
    """A short table label: "busy 48%" (others' share) or "steal 15%" when contended, else ""."""
    if record is None:
        return ""
    r = record.as_dict() if isinstance(record, ContentionRecord) else record
    if not r.get("contended"):
        return ""
    others, steal = r.get("others_cpu_fraction"), r.get("steal_fraction")
    if others is not None and others >= OTHERS_THRESHOLD:
        return f"busy {100 * others:.0f}%"
    if steal is not None:
        return f"steal {100 * steal:.0f}%"
    return "busy"
