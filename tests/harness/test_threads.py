"""The thread policy and the busy-CPU flag, with real competing processes.

The decision rule itself (what counts as busy) is tested in test_contention.py; here: a run that shares
the CPU with busy processes drops to the threads left free, records it, and flags its timing metrics in
the terminal table, summary.json, the HTML report and the gate's output; and the thread count never
changes a token.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from harness.records import load_run
from harness.threads import ThreadGovernor, target_threads
from harness.types import SamplingParams
from tests.ceilings import HANG_S
from tests.harness.test_runner import harness, write_suite

BUSY_LOOP = "import sys\nprint('ready', flush=True)\nwhile True:\n    pass\n"


@pytest.fixture
def two_busy_processes():
    """Two pure-Python busy loops: together they want both cores of the test machine."""
    procs = [subprocess.Popen([sys.executable, "-c", BUSY_LOOP], stdout=subprocess.PIPE, text=True) for _ in range(2)]
    try:
        for proc in procs:
            assert proc.stdout.readline().strip() == "ready"
        yield procs
    finally:
        for proc in procs:
            proc.kill()
            proc.wait(timeout=HANG_S)


@pytest.mark.parametrize(
    ("others", "cpus", "ceiling", "expected"),
    [
        (0.0, 2, 2, 2),
        (0.02, 2, 2, 2),
        (0.5, 2, 2, 1),
        (0.67, 2, 2, 1),
        (1.0, 2, 2, 1),
        (0.25, 16, 16, 12),
        (0.0, 16, 4, 4),
    ],
)
def test_target_threads_leaves_the_cpus_others_use(others, cpus, ceiling, expected):
    assert target_threads(others, cpus, ceiling) == expected


@pytest.mark.parametrize("which", ["trained", "random"])
def test_one_and_two_threads_give_the_same_tokens(which, tiny_checkpoint):
    """The policy may change the thread count between samples: the tokens must not change, and a log-prob
    at most in its last bits (reduction order; random float32 weights show it, bf16-origin ones do not)."""
    from harness.backends.tinylm import load_directory, load_random

    cpu = torch.device("cpu")
    model = load_directory(tiny_checkpoint, "tiny", cpu) if which == "trained" else load_random("2.5m", "r", cpu)
    previous = torch.get_num_threads()
    outputs = {}
    try:
        for threads in (2, 1):
            torch.set_num_threads(threads)
            outputs[threads] = [
                model.generate(
                    model.encode(f"Once upon a time number {seed}"),
                    SamplingParams(0.8, 50, 40, seed),
                    torch.Generator().manual_seed(seed),
                )
                for seed in range(6)
            ]
    finally:
        torch.set_num_threads(previous)
    for one, two in zip(outputs[1], outputs[2], strict=True):
        assert one.tokens == two.tokens
        assert max(abs(a - b) for a, b in zip(one.logprobs, two.logprobs, strict=True)) <= 1e-5


def _checks_until(governor: ThreadGovernor, wanted: int) -> bool:
    """Do some work between checks (each window needs >= 50 ms) until the governor settles on ``wanted``;
    bounded by a count of checks, never by a clock."""
    for _ in range(200):
        sum(i * i for i in range(200_000))
        if governor.check() == wanted:
            return True
    return False


def test_governor_drops_to_the_free_cpus_and_follows_what_it_measures(two_busy_processes):
    """With two busy loops on the machine it drops to one thread. After they end it follows what it
    measures (the machine may still be busy with other work, e.g. a second test run): every decision
    equals ``target_threads`` of the share others used in that window."""
    governor = ThreadGovernor(max_threads=2)
    if governor.policy != "adaptive":
        pytest.skip("no /proc/stat to measure other processes with")
    try:
        assert _checks_until(governor, 1) and governor.switches == 1 and governor.last_others >= 0.25
        for proc in two_busy_processes:
            proc.kill()
            proc.wait(timeout=HANG_S)
        decisions = 0
        for _ in range(120):  # ~15 ms of work each: several 0.25 s windows
            sum(i * i for i in range(200_000))
            before = governor.last_others
            current = governor.check()
            if governor.last_others is not before:  # a window long enough to decide on
                decisions += 1
                assert current == target_threads(governor.last_others, 2, 2), governor.last_others
        assert decisions >= 2
        assert sum(governor.summary()["samples_at"].values()) == governor.summary()["samples_at"].get("1", 0) + (
            governor.summary()["samples_at"].get("2", 0)
        )
    finally:
        governor.restore()


def _run_long_enough_to_judge(tmp_path, checkpoint):
    """Run the busy suite, growing it until its timing window is long enough to judge (>= 0.5 s of 2 CPUs):
    how much work that takes depends on the machine and the decode step (0.47 s for the first size on a fast
    CI machine with the PyTorch step, which the fused C step runs 4-5x faster), so the size is chosen by what
    the probe reports, bounded by a count of attempts."""
    for attempt, (samples, max_new) in enumerate([(2, 48), (4, 128), (8, 256), (32, 256), (128, 256)]):
        suite = write_suite(tmp_path, name=f"busy{attempt}", n_prompts=16, samples=samples, max_new=max_new)
        out = tmp_path / f"busy{attempt}"
        result = harness("run", suite, "--models", checkpoint, "--out", out, "--no-progress", check=0)
        timing = load_run(out).manifest.models[0].timing
        if not str(timing.get("reason", "")).startswith("window too short"):
            return out, result, timing
    pytest.fail(f"even the largest suite ran too briefly to judge: {timing}")


def test_a_run_on_a_busy_cpu_is_flagged_everywhere(two_busy_processes, tiny_checkpoint, tmp_path):
    out, result, timing = _run_long_enough_to_judge(tmp_path, tiny_checkpoint)
    assert timing["contended"] is True and timing["others_cpu_fraction"] >= 0.05, timing
    assert "1" in timing["threads"]["samples_at"]  # the policy gave the competitors their core
    flags = json.loads((out / "summary.json").read_text())["timing_flags"]
    assert list(flags) == [str(tiny_checkpoint)] and flags[str(tiny_checkpoint)]["flag"].startswith("busy")
    assert "timing taken while other processes used the CPU" in result.stdout.replace("\n", " ")
    report = (out / "report.html").read_text(encoding="utf-8")
    assert "⚠ busy" in report and "Timing taken while other processes used the CPU" in report
    gate = harness("gate", out, "--baseline", out, "--format", "markdown")
    assert gate.returncode == 0, gate.stderr
    assert "timing of" in gate.stdout and "taken while other processes used the CPU" in gate.stdout
