#!/usr/bin/env python
"""Decode speed under contention: each preset × thread policy idle, with 1 and with 2 competing copies.

Issue 15: on a 2-core machine two ``harness run`` processes with 2 OpenMP threads each slowed each other ~40x,
because libgomp's worker threads spin-wait for work while the other process holds the core. This script
measures, for every thread policy, what a competing copy of the same workload does to batch-1 decode tok/s.

For each preset and policy:

- one *measuring* process and two *competitor* processes start, all with the policy's environment (OpenMP
  reads it when torch initialises its thread pool, so every policy needs fresh processes) and thread count,
  each loading the preset (the bundled checkpoint, else random weights of the same shape) and generating
  once to warm up;
- a competitor is the same workload: it generates ``--tokens`` tokens in a loop, the policy's settings and
  all, until killed; both are stopped (SIGSTOP) between measurements, so they use no CPU while idle;
- each round measures the same process idle, with one competitor resumed (SIGCONT), then with both: one
  generation of ``--tokens`` new tokens (EOS ignored, top-k 50, temperature 0.8) each, after untimed
  generations at that level for at least ``SETTLE_S`` (a level lasts many samples in a real run, and an
  adaptive policy decides from what it saw over the last quarter second or more). Rounds interleave
  the three levels so a drift of the machine's speed affects them alike.

Reported: decode tok/s = (n - 1) / (last token - first token), the median over ``--rounds``; "% of idle" is
the median of the per-round ratios (each contended measurement paired with its own round's idle one). The
measuring process also wraps each generation in ``harness.contention.ContentionProbe`` and reports the share
of the machine that others used (``others``: expect ~0 idle, clearly above the 5% threshold with competitors;
at tens of milliseconds a window is shorter than the probe judges, so read these as indications).

Policies (``--policies``, default all): ``default`` (torch's thread count, libgomp defaults), ``passive``
(OMP_WAIT_POLICY=PASSIVE), ``spin0`` / ``spin1000`` / ``spin10000`` / ``spin100000`` (GOMP_SPINCOUNT),
``threads1`` (torch.set_num_threads(1)), ``candidate`` (whatever ``harness.threads.apply_thread_policy``
sets, called before torch is imported; skipped while that module does not exist), and any
``--policy NAME=ENV1=V1,ENV2=V2[,threads=N]`` given (repeatable). OMP_*, GOMP_* and KMP_* variables of the
calling shell are removed first, so each policy is exactly what it says.

Competitors are always killed (``finally``; also on SIGTERM, and by the kernel if this process dies: they
are started with PR_SET_PDEATHSIG).

    python benchmarks/contention.py --json reports/contention.json --save
    python benchmarks/contention.py --presets 5m --policies default,passive --policy mine=GOMP_SPINCOUNT=300
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import importlib.util
import json
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from a checkout

from harness.environment import ISA_FLAGS, cpu_isa, cpu_name  # noqa: E402  (imports no torch)

SETTLE_S = 0.6  # untimed generation at each level before its timed one
PROMPT = "Once upon a time, there was a little girl named Lily."
TEMPERATURE, TOP_K = 0.8, 50
LEVELS = (0, 1, 2)  # competitors running
OMP_PREFIXES = ("OMP_", "GOMP_", "KMP_")


@dataclass(frozen=True)
class Policy:
    name: str
    env: dict[str, str] = field(default_factory=dict)
    threads: int | None = None
    candidate: bool = False  # call harness.threads.apply_thread_policy(threads) before importing torch


BUILTIN = {
    "default": Policy("default"),
    "passive": Policy("passive", {"OMP_WAIT_POLICY": "PASSIVE"}),
    **{f"spin{n}": Policy(f"spin{n}", {"GOMP_SPINCOUNT": str(n)}) for n in (0, 1000, 10000, 100000)},
    "threads1": Policy("threads1", threads=1),
    "candidate": Policy("candidate", candidate=True),
}


def parse_policy(text: str) -> Policy:
    """``NAME=ENV1=V1,ENV2=V2[,threads=N][,candidate=1]`` (``NAME=`` alone: no settings)."""
    name, _, rest = text.partition("=")
    if not name.strip():
        raise ValueError(f"--policy {text!r}: expected NAME=ENV=VALUE,...")
    env: dict[str, str] = {}
    threads, candidate = None, False
    for item in filter(None, (s.strip() for s in rest.split(","))):
        key, eq, value = item.partition("=")
        if not eq:
            raise ValueError(f"--policy {text!r}: {item!r} is not KEY=VALUE")
        if key == "threads":
            threads = int(value)
        elif key == "candidate":
            candidate = value not in ("0", "false", "")
        else:
            env[key] = value
    return Policy(name.strip(), env, threads, candidate)


# ------------------------------------------------------------------ the worker processes
def _die_with_parent() -> None:
    """Ask the kernel to SIGKILL this process when its parent dies (Linux), so no competitor outlives a crash."""
    with contextlib.suppress(OSError, AttributeError):  # not Linux: no prctl
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def worker(role: str, preset: str, tokens: int, policy: Policy) -> int:
    """Load, warm up, say ready; then compete forever, or answer commands on stdin with one JSON line each.

    "measure LEVEL": one timed generation, inside the contention probe kept for LEVEL (resumed around the
    generation only, so each level's probe adds up its generations: one alone is shorter than /proc/stat's
    10 ms ticks resolve); "probes": every level's probe record; anything else ends the worker.
    """
    _die_with_parent()
    applied: Any = None
    if policy.candidate:
        from harness.threads import apply_thread_policy

        applied = apply_thread_policy(policy.threads)
    import torch

    if policy.threads and not policy.candidate:
        torch.set_num_threads(policy.threads)
    from harness.backends.tinylm import BUNDLED_DIR, is_checkpoint_dir, load_directory, load_random
    from harness.contention import ContentionProbe
    from harness.types import SamplingParams

    cpu = torch.device("cpu")
    bundled = BUNDLED_DIR / preset
    if is_checkpoint_dir(bundled):
        model, weights = load_directory(bundled, preset, cpu), "bundled"
    else:
        model, weights = load_random(preset, f"tinylm:random/{preset}", cpu), "random"
    model.eos_id = None
    prompt_ids = model.encode(PROMPT)

    governor = applied if hasattr(applied, "check") else None

    def generate(seed: int) -> Any:
        if governor is not None:  # what the runner does before each sample
            governor.check()
        params = SamplingParams(temperature=TEMPERATURE, top_k=TOP_K, max_new_tokens=tokens, seed=seed)
        return model.generate(prompt_ids, params, torch.Generator(device="cpu").manual_seed(seed))

    generate(0)
    ready = {
        "ready": True,
        "pid": os.getpid(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "weights": weights,
        "omp_env": {k: v for k, v in os.environ.items() if k.startswith(OMP_PREFIXES)},
        "applied": applied.summary() if governor is not None else applied,
    }
    print(json.dumps(ready), flush=True)
    seed = 1
    if role == "compete":
        while True:
            generate(seed)
            seed += 1
    probes: dict[str, ContentionProbe] = {}
    for line in sys.stdin:
        command, _, level = line.strip().partition(" ")
        if command == "probes":
            print(json.dumps({k: p.stop() for k, p in probes.items()}), flush=True)
            continue
        if command != "measure":
            break
        settle_until, settle = time.perf_counter() + SETTLE_S, seed + 10**6
        while True:  # settle: a level lasts many samples in a real run, so an adaptive policy sees it first
            generate(settle)
            settle += 1
            if time.perf_counter() >= settle_until:
                break
        probe = probes.setdefault(level, ContentionProbe())
        probe.resume()
        gen = generate(seed)
        probe.pause()
        seed += 1
        n = len(gen.tokens)
        tps = (n - 1) / ((gen.token_times_ns[-1] - gen.token_times_ns[0]) / 1e9)
        print(json.dumps({"decode_tps": tps, "tokens": n, "threads": torch.get_num_threads()}), flush=True)
    return 0


# ------------------------------------------------------------------ the parent
def worker_env(policy: Policy) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(OMP_PREFIXES)}
    env.update(policy.env)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return env


def spawn(role: str, preset: str, tokens: int, policy: Policy) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            str(Path(__file__).resolve()),
            "--worker",
            role,
            preset,
            str(tokens),
            json.dumps(asdict(policy)),
        ],
        stdin=subprocess.PIPE if role == "measure" else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        text=True,
        env=worker_env(policy),
    )


def read_json_line(proc: subprocess.Popen, what: str) -> dict[str, Any]:
    """The worker's next line; blocks until it writes one or exits (then its exit status is the error)."""
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        raise RuntimeError(f"{what} exited with status {proc.wait()} before answering")
    return json.loads(line)


def measure(preset: str, policy: Policy, tokens: int, rounds: int) -> dict[str, Any]:
    """One measuring process and two competitors for ``policy``; ``rounds`` × (idle, +1, +2)."""
    procs: list[subprocess.Popen] = []
    try:
        meter = spawn("measure", preset, tokens, policy)
        procs.append(meter)
        competitors = [spawn("compete", preset, tokens, policy) for _ in range(max(LEVELS))]
        procs += competitors
        info = read_json_line(meter, f"{preset}/{policy.name} measuring process")
        for i, c in enumerate(competitors):
            read_json_line(c, f"{preset}/{policy.name} competitor {i + 1}")
            c.send_signal(signal.SIGSTOP)
        tps: dict[int, list[float]] = {k: [] for k in LEVELS}
        threads_used: dict[int, list[int | None]] = {k: [] for k in LEVELS}
        for _ in range(rounds):
            for level in LEVELS:
                for i, c in enumerate(competitors):
                    c.send_signal(signal.SIGCONT if i < level else signal.SIGSTOP)
                assert meter.stdin is not None
                meter.stdin.write(f"measure {level}\n")
                meter.stdin.flush()
                result = read_json_line(meter, f"{preset}/{policy.name} measuring process")
                if result["tokens"] != tokens:
                    raise RuntimeError(f"{preset}/{policy.name}: generated {result['tokens']} of {tokens} tokens")
                tps[level].append(result["decode_tps"])
                threads_used[level].append(result.get("threads"))
            for c in competitors:
                c.send_signal(signal.SIGSTOP)
        assert meter.stdin is not None
        meter.stdin.write("probes\n")
        meter.stdin.flush()
        probes = read_json_line(meter, f"{preset}/{policy.name} measuring process")
    finally:
        for p in procs:
            p.kill()  # SIGKILL also ends a stopped process
        for p in procs:
            p.wait()

    def share(level: int) -> float:
        return statistics.median(a / b for a, b in zip(tps[level], tps[0], strict=True))

    return {
        "preset": preset,
        "policy": policy.name,
        "env": policy.env,
        "threads": info["threads"],
        "weights": info["weights"],
        "omp_env": info["omp_env"],
        "applied": info["applied"],
        "torch": info["torch"],
        "worker_pids": [p.pid for p in procs],  # all killed and reaped by now
        "idle_tps": statistics.median(tps[0]),
        "one_tps": statistics.median(tps[1]),
        "one_share": share(1),
        "two_tps": statistics.median(tps[2]),
        "two_share": share(2),
        "probe": {str(k): probes[str(k)] for k in LEVELS},
        "raw_tps": {str(k): v for k, v in tps.items()},
        "threads_at_measurement": {str(k): v for k, v in threads_used.items()},
    }


def cpu_description() -> dict[str, Any]:
    """CPU model and the ISA extensions that decide which kernels oneDNN and the fused step use."""
    return {"cpu": cpu_name(), "isa": cpu_isa(), "cpu_count": os.cpu_count()}


def openmp_runtime() -> str:
    """Which OpenMP runtime torch's CPU wheel bundles (the knobs differ: GOMP_* for libgomp, KMP_* for Intel's)."""
    spec = importlib.util.find_spec("torch")
    if spec is None or spec.origin is None:
        return "unknown"
    libs = sorted(p.name for p in (Path(spec.origin).parent / "lib").iterdir() if re.match(r"lib[gi]?omp\b", p.name))
    return ", ".join(libs) or "none bundled (system OpenMP)"


def fmt_row(r: dict[str, Any]) -> str:
    def others(record: dict[str, Any]) -> str:
        """The level's share used by others; "?" marks a window too short for the probe to judge."""
        x = record["others_cpu_fraction"]
        return "-" if x is None else f"{100 * x:.0f}" + ("?" if "too short" in record["reason"] else "")

    o = r["probe"]
    return (
        f"{r['preset']:<7}{r['policy']:<14}{r['threads']:>4}{r['idle_tps']:>10.0f}{r['one_tps']:>10.0f}"
        f"{100 * r['one_share']:>7.0f}%{r['two_tps']:>10.0f}{100 * r['two_share']:>7.0f}%"
        f"   {others(o['0'])}/{others(o['1'])}/{others(o['2'])}"
    )


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:
        role, preset, tokens, policy = argv[1], argv[2], int(argv[3]), Policy(**json.loads(argv[4]))
        return worker(role, preset, tokens, policy)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", default="10m,7m,5m,2.5m", help="comma-separated presets (default: all four)")
    parser.add_argument("--tokens", type=int, default=128, help="new tokens per generation (default 128)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of (idle, +1, +2) per policy (default 3)")
    parser.add_argument(
        "--policies", default=",".join(BUILTIN), help=f"built-in policies to run ({', '.join(BUILTIN)})"
    )
    parser.add_argument(
        "--policy", action="append", default=[], metavar="NAME=ENV=V,...", help="extra policy: NAME=ENV1=V1[,threads=N]"
    )
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--save", action="store_true", help="write the printed text to benchmarks/results/")
    args = parser.parse_args(argv)
    from tinylm_ref.config import PRESETS

    presets = [p.strip().lower() for p in args.presets.split(",") if p.strip()]
    if unknown := [p for p in presets if p not in PRESETS]:
        parser.error(f"unknown preset(s) {unknown}; choose from {', '.join(PRESETS)}")
    if args.tokens < 2 or args.rounds < 1:
        parser.error("--tokens must be >= 2 and --rounds >= 1")
    policies: list[Policy] = []
    notes: list[str] = []
    for name in filter(None, (s.strip() for s in args.policies.split(","))):
        if name not in BUILTIN:
            parser.error(f"unknown policy {name!r}; built-in: {', '.join(BUILTIN)} (or define one with --policy)")
        if BUILTIN[name].candidate and importlib.util.find_spec("harness.threads") is None:
            notes.append("candidate: skipped, harness/threads.py (apply_thread_policy) does not exist yet")
            continue
        policies.append(BUILTIN[name])
    try:
        policies += [parse_policy(p) for p in args.policy]
    except ValueError as exc:
        parser.error(str(exc))

    def on_sigterm(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)  # unwinds through measure()'s finally, which kills the workers

    signal.signal(signal.SIGTERM, on_sigterm)
    lines: list[str] = []

    def out(text: str = "") -> None:
        print(text, flush=True)
        lines.append(text)

    cpu = cpu_description()
    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    date = time.strftime("%Y-%m-%d", time.gmtime())
    out(
        f"contention: CPU {cpu['cpu']} × {cpu['cpu_count']}, ISA {' '.join(cpu['isa']) or 'none of ' + '/'.join(ISA_FLAGS)}, "
        f"OpenMP {openmp_runtime()}, python {platform.python_version()}"
    )
    out(
        f"load average before {load_before if load_before is None else f'{load_before:.2f}'}, "
        f"{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime())} UTC; batch 1, {args.tokens} new tokens, EOS ignored, "
        f"top-k {TOP_K}, temperature {TEMPERATURE}; median of {args.rounds} rounds of (idle, +1, +2 competing copies)"
    )
    for note in notes:
        out(f"note: {note}")
    out()
    out(
        f"{'preset':<7}{'policy':<14}{'thr':>4}{'idle':>10}{'+1 copy':>10}{'%idle':>8}{'+2 copies':>10}{'%idle':>8}   others% idle/+1/+2"
    )
    rows = []
    t0 = time.perf_counter()
    for preset in presets:
        for policy in policies:
            row = measure(preset, policy, args.tokens, args.rounds)
            rows.append(row)
            out(fmt_row(row))
    load_after = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    out()
    out("decode tok/s; %idle = median of per-round ratios to the same round's idle measurement;")
    out("others% = share of the machine other processes used during that level's timed generations, all rounds")
    out("(harness.contention; '?' = fewer clock ticks than the probe judges, an indication only)")
    out("policies: " + "; ".join(f"{p.name}: {p.env or {}}, threads {p.threads or 'default'}" for p in policies))
    out(
        f"load average after {load_after if load_after is None else f'{load_after:.2f}'}; took {time.perf_counter() - t0:.0f} s"
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "environment": {
                **cpu,
                "openmp": openmp_runtime(),
                "loadavg_before": load_before,
                "loadavg_after": load_after,
            },
            "args": {k: str(v) for k, v in vars(args).items()},
            "policies": [asdict(p) for p in policies],
            "notes": notes,
            "rows": rows,
        }
        args.json.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    if args.save:
        path = ROOT / "benchmarks" / "results" / f"contention-{date}.txt"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        print(f"saved {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
