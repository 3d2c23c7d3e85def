"""The contention probe flags a window in which other processes used the CPU, with real competing processes.

The machine these tests run on may be busy with anything (another copy of this suite, other users), so no test
asserts that a window was quiet or how fast anything ran. Windows end when a known amount of CPU work is done
(this process's or the workers'), never after a fixed time, so a 10x slower machine only makes them longer.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from harness.contention import (
    MIN_TICKS,
    OTHERS_THRESHOLD,
    STEAL_THRESHOLD,
    ContentionProbe,
    Layout,
    flag_text,
    judge,
)
from tests.ceilings import HANG_S

linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux") or Layout.detect().source is None, reason="needs /proc/stat or cgroup counters"
)

BUSY_WORKER = "import sys\nprint('ready', flush=True)\nwhile True:\n    pass\n"
HZ = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _cpu_s(pid: int) -> float:
    """utime + stime of a process from /proc/<pid>/stat (fields 14 and 15, after the parenthesised name)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / HZ


@contextmanager
def busy_workers(n: int) -> Iterator[list[subprocess.Popen]]:
    """``n`` pure-Python busy-loop processes, each running (it printed "ready") before the block starts."""
    procs: list[subprocess.Popen] = []
    try:
        for _ in range(n):
            procs.append(subprocess.Popen([sys.executable, "-c", BUSY_WORKER], stdout=subprocess.PIPE, text=True))
        for p in procs:
            assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        yield procs
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait()


def _wait_until(condition, what: str) -> None:
    """Poll ``condition`` (which also checks the workers are alive); the ceiling is a safety net only."""
    deadline = time.monotonic() + HANG_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.02)


def _spin_own_cpu(seconds: float) -> None:
    """Burn ``seconds`` of this process's CPU time in pure Python (one thread)."""
    end = time.process_time() + seconds
    x = 0
    while time.process_time() < end:
        x += 1


def _workers_cpu(procs: list[subprocess.Popen]) -> float:
    assert all(p.poll() is None for p in procs), "a busy worker exited"
    return sum(_cpu_s(p.pid) for p in procs)


def _window_ticks_ok(record: dict) -> bool:
    return record["source"] != "proc_stat" or record["wall_s"] * HZ * record["usable_cpus"] >= MIN_TICKS


@linux_only
def test_two_busy_workers_are_counted_as_others_and_flag_the_window():
    with busy_workers(2) as procs:
        before = _workers_cpu(procs)
        probe = ContentionProbe.start()
        # this process sleeps; the window ends once the workers have used 2 CPU-seconds between them
        _wait_until(lambda: _workers_cpu(procs) - before >= 2.0, "the workers to use 2 CPU-seconds")
        record = probe.stop()
        workers = _workers_cpu(procs) - before
    capacity = record["wall_s"] * record["usable_cpus"]
    assert _window_ticks_ok(record)
    # every CPU-second the workers used is someone else's (give back a tick per CPU per edge of rounding)
    slack = 2 * 2 * record["usable_cpus"] / HZ
    assert record["detail"]["others_cpu_s_raw"] >= workers - slack - record["wall_s"] * 0.02
    assert record["others_cpu_fraction"] >= (workers - slack) / capacity - 0.02
    assert record["others_cpu_fraction"] <= 1.0 + slack / capacity
    assert record["others_cpu_fraction"] >= OTHERS_THRESHOLD
    assert record["contended"] is True
    assert "other processes used" in record["reason"] and "during timing" in record["reason"]
    assert flag_text(record).startswith("busy ")


@linux_only
def test_own_work_is_not_counted_as_others_and_the_flag_follows_the_threshold():
    """This process busy alone: its CPU is its own, the fields agree, and the flag is the rule applied."""
    probe = ContentionProbe.start()
    _spin_own_cpu(1.0)
    alone = probe.stop()
    assert alone["process_cpu_s"] >= 1.0
    assert 0 < alone["cpu_per_wall"] <= 1.05  # one Python thread cannot use more than one CPU
    assert alone["wall_s"] >= alone["process_cpu_s"] * 0.95
    assert 0.0 <= alone["others_cpu_fraction"] <= 1.0
    assert alone["usable_cpus"] >= 1 and alone["loadavg_before"] is not None and alone["loadavg_after"] is not None
    assert alone["steal_fraction"] is None or 0.0 <= alone["steal_fraction"] <= 1.0
    others_s = alone["detail"]["others_cpu_s_raw"]
    assert alone["others_cpu_fraction"] == pytest.approx(max(0.0, others_s) / (alone["wall_s"] * alone["usable_cpus"]))
    if _window_ticks_ok(alone):
        steal = alone["steal_fraction"] or 0.0
        assert alone["contended"] == (alone["others_cpu_fraction"] >= OTHERS_THRESHOLD or steal >= STEAL_THRESHOLD)
    assert (flag_text(alone) != "") == alone["contended"]

    # the same work with two busy workers: others rise by at least what the workers used meanwhile
    with busy_workers(2) as procs:
        before = _workers_cpu(procs)
        probe = ContentionProbe.start()
        _spin_own_cpu(1.0)
        _wait_until(lambda: _workers_cpu(procs) - before >= 1.0, "the workers to use 1 CPU-second")
        contended = probe.stop()
        workers = _workers_cpu(procs) - before
    slack = 4 * contended["usable_cpus"] / HZ + 0.02 * contended["wall_s"]
    assert contended["process_cpu_s"] >= 1.0
    assert contended["detail"]["others_cpu_s_raw"] >= workers - slack
    assert contended["contended"] is True


@linux_only
def test_paused_time_is_left_out():
    """A busy spell while paused is in a never-paused twin probe's window but not in the paused one's."""
    outer = time.perf_counter()
    twin = ContentionProbe.start()
    probe = ContentionProbe.start()
    _spin_own_cpu(0.3)
    probe.pause()
    assert not probe.running
    paused_from = time.perf_counter()
    with busy_workers(2) as procs:
        before = _workers_cpu(procs)
        _wait_until(lambda: _workers_cpu(procs) - before >= 2.0, "the workers to use 2 CPU-seconds")
        during_pause = _workers_cpu(procs) - before
    paused_s = time.perf_counter() - paused_from
    probe.resume()
    assert probe.running
    _spin_own_cpu(0.3)
    record = probe.stop()
    full = twin.stop()
    outer = time.perf_counter() - outer
    assert record["process_cpu_s"] >= 0.6
    assert record["wall_s"] <= outer - paused_s
    assert full["wall_s"] >= record["wall_s"] + paused_s * 0.99
    # the twin saw the workers' CPU-seconds; the paused probe did not (less a few ticks of rounding)
    slack = 4 * full["usable_cpus"] / HZ + 0.02 * full["wall_s"]
    assert full["detail"]["others_cpu_s_raw"] - record["detail"]["others_cpu_s_raw"] >= during_pause - slack


LAYOUT = Layout(source="proc_stat", cpus=frozenset({0, 1}), usable_cpus=2.0, proc_stat_cpus=2, quota_cpus=None)


def _judge(others_s: float, *, wall: float = 4.0, own: float = 3.0, steal: int | None = 0, layout=LAYOUT):
    busy = round((own + others_s) * HZ)
    total = round(wall * HZ * 2)
    return judge(
        layout,
        wall_s=wall,
        process_cpu_s=own,
        busy_ticks=busy,
        all_ticks=total,
        steal_ticks=steal,
        cgroup_s=None,
        loadavg_before=0.5,
        loadavg_after=0.7,
    ).as_dict()


def test_the_rule_on_known_counts():
    """The decision on a window's counts: the threshold, steal, short windows, and a machine with no counters."""
    quiet = _judge(0.02 * 8.0)
    assert not quiet["contended"] and quiet["others_cpu_fraction"] == pytest.approx(0.02, abs=0.01)
    assert "below" in quiet["reason"] and flag_text(quiet) == ""
    busy = _judge(0.48 * 8.0)
    assert busy["contended"] and busy["reason"] == "other processes used 48% of 2 CPUs during timing"
    assert flag_text(busy) == "busy 48%"
    assert _judge(OTHERS_THRESHOLD * 8.0 + 0.1)["contended"]
    assert not _judge(OTHERS_THRESHOLD * 8.0 - 0.1)["contended"]
    stolen = _judge(0.0, steal=round(0.2 * 4.0 * HZ * 2))
    assert stolen["contended"] and "steal" in stolen["reason"] and flag_text(stolen) == "steal 20%"
    short = _judge(0.5 * 0.1, wall=0.1, own=0.05)
    assert not short["contended"] and "too short" in short["reason"]
    # tick rounding can make a quiet window's "others" slightly negative: clamped, never below zero
    assert _judge(-0.03)["others_cpu_fraction"] == 0.0
    none = judge(
        Layout(None, frozenset(), None, None, None),
        wall_s=1.0,
        process_cpu_s=0.5,
        busy_ticks=None,
        all_ticks=None,
        steal_ticks=None,
        cgroup_s=None,
        loadavg_before=None,
        loadavg_after=None,
    ).as_dict()
    assert none["contended"] is False and none["reason"] == "not measured"
    assert none["others_cpu_fraction"] is None and none["steal_fraction"] is None and flag_text(none) == ""
    cgroup = judge(
        Layout("cgroup", frozenset({0, 1, 2, 3}), 1.5, 4, 1.5),
        wall_s=2.0,
        process_cpu_s=1.0,
        busy_ticks=None,
        all_ticks=None,
        steal_ticks=None,
        cgroup_s=2.5,
        loadavg_before=None,
        loadavg_after=None,
    ).as_dict()
    assert cgroup["others_cpu_fraction"] == pytest.approx(0.5) and cgroup["contended"]
    assert cgroup["reason"] == "other processes used 50% of 1.5 CPUs during timing"
