#!/usr/bin/env python
"""Soak test of ``harness serve``: thousands of streamed requests at a fixed concurrency, nothing may be lost.

Starts ``harness serve SPEC`` on a free loopback port (or uses ``--url`` of a running server), then for each
level of ``--concurrency`` sends ``--requests`` streamed completions through the harness's own ``openai``
backend, keeping that many in flight from a thread pool, exactly as ``harness run --concurrency`` does.
Prompts cycle through the smoke suite's; each request has its own seed.

Every answer is checked by the client: each event parses as JSON, the stream ends with ``[DONE]`` and a
finish reason, and the token count equals the server's ``usage``. A request that fails any check is
*malformed*; one that fails to connect, breaks or times out is *lost*. The server's resident memory
(``VmRSS`` of its process) is sampled every ``--rss-every`` seconds: its start, peak and end per level show
whether it stays bounded.

Reported per level: requests ok / lost / malformed, TTFT and ITL p50/p95/p99 (client side, ms), requests/s and
output tokens/s over the level's wall clock, server RSS start / peak / end (MiB). Exit status 1 if anything
was lost or malformed. Timing on a shared machine is rough: re-measure on a quiet one.

    python benchmarks/serve_soak.py                                  # 2,000 requests at concurrency 32, 2.5m
    python benchmarks/serve_soak.py --requests 100 --concurrency 1,8 --json reports/soak.json
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from harness.backends.openai_api import OpenAIModel  # noqa: E402
from harness.suite import load_suite  # noqa: E402
from harness.types import LoadOptions, SampleFailed, SamplingParams  # noqa: E402


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


class RssSampler(threading.Thread):
    """Samples the server's RSS in the background until stopped."""

    def __init__(self, pid: int | None, every_s: float) -> None:
        super().__init__(daemon=True)
        self.pid, self.every_s, self.samples, self.stopped = pid, every_s, [], threading.Event()

    def run(self) -> None:
        while self.pid is not None and not self.stopped.is_set():
            value = rss_mb(self.pid)
            if value is not None:
                self.samples.append(value)
            self.stopped.wait(self.every_s)


def wait_ready(url: str, proc: subprocess.Popen | None) -> None:
    import httpx

    for _ in range(6000):  # bounded: 10 minutes at 0.1 s
        if proc is not None and proc.poll() is not None:
            raise SystemExit(f"harness serve exited with {proc.returncode}")
        try:
            if httpx.get(f"{url.removesuffix('/v1')}/health", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"{url} did not become ready")


def pct(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 3) if values else None


def run_level(model: OpenAIModel, prompts: list[list[int]], args, concurrency: int, pid: int | None) -> dict:
    sampling = SamplingParams(temperature=0.8, top_k=50, max_new_tokens=args.max_tokens, seed=0)
    ok, lost, malformed, ttfts, itls, tokens = 0, 0, 0, [], [], 0
    errors: dict[str, int] = {}
    lock = threading.Lock()

    def one(i: int) -> None:
        nonlocal ok, lost, malformed, tokens
        generator = torch.Generator().manual_seed(args.seed + i)
        try:
            gen = model.generate(prompts[i % len(prompts)], sampling, generator)
        except SampleFailed as exc:
            kind = "malformed" if any(w in str(exc) for w in ("malformed", "usage says", "not an event")) else "lost"
            with lock:
                if kind == "malformed":
                    malformed += 1
                else:
                    lost += 1
                errors[str(exc)[:120]] = errors.get(str(exc)[:120], 0) + 1
            return
        with lock:
            ok += 1
            tokens += len(gen.tokens)
            if gen.token_times_ns:
                ttfts.append((gen.token_times_ns[0] - gen.start_ns) / 1e6)
                itls.extend((b - a) / 1e6 for a, b in zip(gen.token_times_ns, gen.token_times_ns[1:], strict=False))

    sampler = RssSampler(pid, args.rss_every)
    sampler.start()
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        list(pool.map(one, range(args.requests)))
    wall = time.perf_counter() - start
    sampler.stopped.set()
    sampler.join()
    rss = sampler.samples
    return {
        "concurrency": concurrency,
        "requests": args.requests,
        "ok": ok,
        "lost": lost,
        "malformed": malformed,
        "errors": errors,
        "wall_s": round(wall, 2),
        "requests_per_s": round(ok / wall, 2),
        "output_tokens_per_s": round(tokens / wall, 1),
        **{f"ttft_p{q}_ms": pct(ttfts, q) for q in (50, 95, 99)},
        **{f"itl_p{q}_ms": pct(itls, q) for q in (50, 95, 99)},
        "server_rss_mb": {"start": rss[0], "peak": max(rss), "end": rss[-1]} if rss else None,
        # the RSS at each tenth of the level: flat after the first requests means nothing accumulates
        "server_rss_tenths_mb": [round(rss[min(len(rss) - 1, i * len(rss) // 10)], 1) for i in range(1, 11)]
        if rss
        else None,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spec", default="2.5m", help="model spec for harness serve (default 2.5m)")
    parser.add_argument("--url", help="use this running server (…/v1) instead of starting one")
    parser.add_argument("--model", help="model name on --url (default: the one it serves)")
    parser.add_argument("--requests", type=int, default=2000, help="requests per level (default 2000)")
    parser.add_argument("--concurrency", default="32", help="comma-separated levels (default 32)")
    parser.add_argument("--max-tokens", type=int, default=48, help="new tokens per request (default 48)")
    parser.add_argument("--threads", type=int, default=1, help="the server's torch threads (default 1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rss-every", type=float, default=0.5, help="seconds between RSS samples")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    levels = [int(x) for x in args.concurrency.split(",")]
    proc, pid = None, None
    if args.url:
        url = args.url.rstrip("/")
    else:
        port = free_port()
        url = f"http://127.0.0.1:{port}/v1"
        command = [sys.executable, "-m", "harness", "serve", args.spec, "--port", str(port)]
        proc = subprocess.Popen([*command, "--threads", str(args.threads), "--max-queue", "100000"])
        pid = proc.pid
    results = []
    try:
        wait_ready(url, proc)
        spec = f"openai:{url}" + (f"#{args.model}" if args.model else "")
        model = OpenAIModel(spec, LoadOptions(extra={"read_timeout": "600"}))
        prompts = [model.encode(p.text) for p in load_suite(REPO / "suites" / "smoke.yaml").prompts]
        for level in levels:
            result = run_level(model, prompts, args, level, pid)
            results.append(result)
            print(json.dumps(result), flush=True)
        model.close()
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=60)
    header = "conc   ok lost malf  req/s  tok/s  TTFT p50/p95/p99 ms      ITL p50/p95/p99 ms   RSS start/peak/end MiB"
    print(header)
    for r in results:
        rss = r["server_rss_mb"] or {}
        print(
            f"{r['concurrency']:>4} {r['ok']:>4} {r['lost']:>4} {r['malformed']:>4} {r['requests_per_s']:>6} "
            f"{r['output_tokens_per_s']:>6}  {r['ttft_p50_ms']}/{r['ttft_p95_ms']}/{r['ttft_p99_ms']}  "
            f"{r['itl_p50_ms']}/{r['itl_p95_ms']}/{r['itl_p99_ms']}  "
            f"{rss.get('start', 0):.0f}/{rss.get('peak', 0):.0f}/{rss.get('end', 0):.0f}"
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"args": vars(args) | {"json": str(args.json)}, "levels": results}, indent=1))
    return 1 if any(r["lost"] or r["malformed"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
