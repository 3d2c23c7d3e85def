"""A run-directory writer that emits the documented format (docs/run-directory.md) with realistic values.

Metrics are computed from generated token ids with the formulas of metrics.md, so the fixtures obey the
same invariants as real runs (coherence length <= tokens generated, rates in [0, 1], tps = n / latency).
The first prompt carries a ``<script>`` payload and one output an ``<img onerror>`` payload: they set
``window.__xss`` if they ever execute.
"""

from __future__ import annotations

import hashlib
import html as html_lib
import json
import math
import random
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from harness.records import load_run, write_json_atomic
from harness.summary import write_summaries
from harness.work import derive_seed

XSS_PROMPT = 'Once upon a time <script>window.__xss = 1; alert(1)</script> there was a "brave" cat'
XSS_OUTPUT = (
    'the dog ran <img src=x onerror="window.__xss = 2; alert(1)"> and </script><script>window.__xss = 3</script>'
)
CATEGORIES = ["story openings", "character introductions", "action prompts", "dialogue starters"]
WORDS = [
    "the",
    "a",
    "cat",
    "dog",
    "ran",
    "sat",
    "big",
    "little",
    "happy",
    "sad",
    "park",
    "tree",
    "sun",
    "mom",
    "dad",
    "friend",
    "toy",
    "ball",
    "play",
    "jump",
    "said",
    "was",
    "went",
    "saw",
    "and",
    "then",
    ",",
    ".",
    "!",
    "she",
    "he",
    "they",
]
MODEL_PROFILES = {  # tps, ttft ms, vocabulary used, eos probability per token: roughly the study's shapes
    0: (540.0, 4.1, 60, 0.03),
    1: (300.0, 5.5, 45, 0.04),
    2: (170.0, 7.8, 30, 0.035),
    3: (530.0, 4.1, 50, 0.045),
}

METRICS_JSON: dict[str, dict[str, Any]] = {
    "ttft_ms": {"unit": "ms", "higher_is_better": False, "level": "sample", "kind": "timing"},
    "tps": {"unit": "tokens/s", "higher_is_better": True, "level": "sample", "kind": "timing"},
    "latency_ms": {"unit": "ms", "higher_is_better": False, "level": "sample", "kind": "timing"},
    "tokens_generated": {"unit": "tokens", "higher_is_better": None, "level": "sample", "kind": "count"},
    "perplexity": {"unit": "", "higher_is_better": False, "level": "sample", "kind": "quality"},
    "avg_token_prob": {"unit": "", "higher_is_better": True, "level": "sample", "kind": "quality"},
    "repetition_rate": {"unit": "%", "higher_is_better": False, "level": "sample", "kind": "quality"},
    "coherence_length": {"unit": "tokens", "higher_is_better": True, "level": "sample", "kind": "quality"},
    "vocab_diversity": {"unit": "%", "higher_is_better": True, "level": "sample", "kind": "quality"},
    "distinct_2": {"unit": "%", "higher_is_better": True, "level": "sample", "kind": "quality"},
    "example_word_len": {
        "unit": "chars",
        "higher_is_better": None,
        "level": "sample",
        "kind": "quality",
        "plugin": "harness_metric_example",
    },
    "eos_rate": {"unit": "%", "higher_is_better": None, "level": "model", "kind": "quality"},
    "peak_mem_mb": {"unit": "MB", "higher_is_better": False, "level": "model", "kind": "count"},
}
for _name, _meta in METRICS_JSON.items():
    _meta.setdefault("description", f"{_name} (fixture)")
    _meta.setdefault("plugin", "harness.metrics.fixture")


def repetition_rate(g: list[int]) -> float | None:
    return sum(g[i] in g[max(0, i - 10) : i] for i in range(len(g))) / len(g) if g else None


def coherence_length(g: list[int]) -> int:
    seen = set()
    for s in range(len(g) - 2):
        tri = tuple(g[s : s + 3])
        if tri in seen:
            return s
        seen.add(tri)
    return len(g)


def distinct_2(g: list[int]) -> float | None:
    pairs = list(zip(g, g[1:], strict=False))
    return len(set(pairs)) / len(pairs) if pairs else None


def _sample(
    model_index: int,
    model: str,
    prompt: dict[str, str],
    sample_index: int,
    *,
    suite: str,
    token_seed: int,
    timing_rng: random.Random,
    speed: float,
    batched: bool,
) -> dict[str, Any]:
    tps_base, ttft, vocab, p_eos = MODEL_PROFILES[model_index % 4]
    rng = random.Random(f"{token_seed}/{model_index}/{prompt['id']}/{sample_index}")
    ids: list[int] = []
    eos = prompt["id"] != "p002" or model_index != 0  # p002 on model 0: EOS first, n = 0
    if eos:
        while len(ids) < 120 and not (len(ids) > 2 and rng.random() < p_eos):
            ids.append(rng.choice(ids[-6:]) if ids and rng.random() < 0.12 else rng.randrange(vocab))
    n = len(ids)
    logprobs = [math.log(rng.uniform(0.2, 0.95)) for _ in ids]
    speed_now = speed * (4.0 if batched else 1.0) * timing_rng.uniform(0.93, 1.07)
    first = ttft * timing_rng.uniform(0.9, 1.2) / speed
    times = [first + i * 1000.0 / (tps_base * speed_now) for i in range(n)]
    end = times[-1] + 0.2 if times else first
    text = " ".join(WORDS[t % len(WORDS)] for t in ids)
    pieces = [(" " if i else "") + WORDS[t % len(WORDS)] for i, t in enumerate(ids)]
    if prompt["id"] == "p001" and model_index == 0:
        text = XSS_OUTPUT + " " + text
        if pieces:
            pieces[0] = XSS_OUTPUT + " " + pieces[0]
    metrics: dict[str, Any] = {
        "ttft_ms": times[0] if times else None,
        "tps": n / end * 1000.0,
        "latency_ms": end,
        "tokens_generated": n,
        "perplexity": math.exp(-sum(logprobs) / n) if n else None,
        "avg_token_prob": sum(math.exp(x) for x in logprobs) / n if n else None,
        "repetition_rate": repetition_rate(ids),
        "coherence_length": coherence_length(ids),
        "vocab_diversity": len(set(ids)) / n if n else None,
        "distinct_2": distinct_2(ids),
        "example_word_len": (sum(len(w) for w in text.split()) / len(text.split())) if text.split() else None,
    }
    errors = {}
    if prompt["id"] == "p003" and model_index == 1:
        metrics["distinct_2"], errors["distinct_2"] = None, "RuntimeError: fixture failure"
    return {
        "suite": suite,
        "model": model,
        "prompt_id": prompt["id"],
        "category": prompt["category"],
        "sample_index": sample_index,
        "seed": derive_seed(1234, prompt["id"], sample_index),
        "prompt_text": prompt["text"],
        "prompt_tokens": len(prompt["text"].split()),
        "output_text": text,
        "output_ids": ids,
        "output_tokens": pieces,
        "eos_hit": eos,
        "stop_reason": "eos" if eos else "max_new_tokens",
        "token_times_ms": times,
        "end_ms": end,
        "logprobs": logprobs,
        "batched": batched,
        "flags": [],
        "metrics": metrics,
        "metric_errors": errors,
    }


def write_run(
    path: Path,
    *,
    suite: str = "smoke",
    models: tuple[str, ...] = ("tinylm:random/2.5m", "tinylm:random/10m"),
    n_prompts: int = 12,
    samples_per_prompt: int = 1,
    batched: bool = False,
    token_seed: int = 0,
    timing_seed: int = 0,
    speed: float = 1.0,
    status: str = "complete",
    prompts_sha: str = "p" * 64,
    dtype: str = "float32",
) -> Path:
    """Write a complete run directory and return its path."""
    path.mkdir(parents=True, exist_ok=True)
    prompts = [
        {
            "id": f"p{i + 1:03d}",
            "category": CATEGORIES[i % 4],
            "text": XSS_PROMPT if i == 0 else f"Prompt {i + 1}: Tim and his {WORDS[i % len(WORDS)]} went to the park.",
        }
        for i in range(n_prompts)
    ]
    timing_rng = random.Random(timing_seed)
    samples = [
        _sample(mi, m, p, si, suite=suite, token_seed=token_seed, timing_rng=timing_rng, speed=speed, batched=batched)
        for mi, m in enumerate(models)
        for p in prompts
        for si in range(samples_per_prompt)
    ]
    with open(path / "samples.jsonl", "w", encoding="utf-8") as handle:
        for s in samples:
            handle.write(json.dumps(s, ensure_ascii=False) + "\n")
    with open(path / "model_metrics.jsonl", "w", encoding="utf-8") as handle:
        for mi, m in enumerate(models):
            eos = [s["eos_hit"] for s in samples if s["model"] == m]
            handle.write(
                json.dumps({"model": m, "metrics": {"eos_rate": sum(eos) / len(eos), "peak_mem_mb": 180.0 + 40 * mi}})
                + "\n"
            )
    write_json_atomic(path / "metrics.json", METRICS_JSON)
    manifest = {
        "format_version": 1,
        "run_id": f"{suite}-{path.name}",
        "status": status,
        "created_at": "2026-06-22T10:00:00+00:00",
        "finished_at": "2026-06-22T10:04:12+00:00" if status == "complete" else None,
        "command": ["harness", "run", f"suites/{suite}.yaml", "--models", *models],
        "suite": {
            "name": suite,
            "path": f"suites/{suite}.yaml",
            "sha256": hashlib.sha256(suite.encode()).hexdigest(),  # the name is part of a real suite hash
            "prompts_sha256": prompts_sha,
            "n_prompts": n_prompts,
            "samples_per_prompt": samples_per_prompt,
            "sampling": {"temperature": 0.8, "top_k": 50, "max_new_tokens": 256, "seed": 1234},
            "definition": {"name": suite, "prompts": prompts},
        },
        "models": [
            {
                "name": m,
                "spec": m,
                "status": "ok",
                "error": None,
                "info": {
                    "name": m,
                    "spec": m,
                    "backend": "tinylm",
                    "parameters": [2_500_000, 10_300_000, 6_800_000, 5_200_000][i % 4],
                    "vocab_size": 512,
                    "context_length": 128,
                    "device": "cpu",
                    "dtype": dtype,
                    "source": "random",
                    "weights_sha256": "w" * 64,
                },
                "load_s": 0.4,
                "wall_s": 12.3,
            }
            for i, m in enumerate(models)
        ],
        "batch_size": 4 if batched else 1,
        "dtype": dtype,
        "shard": None,
        # as the runner writes it (docs/run-directory.md still says "git_commit"; both are read)
        "environment": {
            "python": "3.11.7",
            "platform": "Linux-6.1-x86_64",
            "machine": "x86_64",
            "cpu": "Fixture CPU",
            "cpu_count": 2,
            "gpu": None,
            "device": "cpu",
            "threads": 2,
            "git": {"commit": "0123456789abcdef0123456789abcdef01234567", "dirty": False},
            "packages": {
                "torch": "2.13.0",
                "tinylm-harness": "0.1.0",
                "numpy": "2.4.6",
                "plotly": "7.1.0",
                "pandas": "3.1.1",
            },
        },
    }
    write_json_atomic(path / "manifest.json", manifest)
    write_summaries(load_run(path, check_complete=False))
    return path


@pytest.fixture
def make_run(tmp_path: Path):
    """Factory: ``make_run("name", **options)`` writes a run directory under tmp_path."""

    def _make(name: str = "run-a", **options: Any) -> Path:
        return write_run(tmp_path / "runs" / name, **options)

    return _make


class Page(HTMLParser):
    """Minimal DOM summary of a report: JSON blocks, executable scripts, and elements by attribute."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.json: dict[str, Any] = {}
        self.exec_scripts = 0
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self._json_id: str | None = None
        self._buf: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.elements.append((tag, a))
        if tag == "script":
            if a.get("type") == "application/json":
                self._json_id, self._buf = a.get("id"), []
            else:
                self.exec_scripts += 1

    def handle_data(self, data: str) -> None:
        if self._json_id is not None:
            self._buf.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "script" and self._json_id is not None:
            self.json[self._json_id] = json.loads("".join(self._buf))
            self._json_id = None

    def find(self, tag: str, **attrs: str) -> list[dict[str, str | None]]:
        return [
            a for t, a in self.elements if t == tag and all(a.get(k.replace("_", "-")) == v for k, v in attrs.items())
        ]


def table_rows(html: str, table_attr: str) -> list[list[str]]:
    """Text of each row of the first table whose opening tag contains ``table_attr`` (tags stripped)."""
    start = html.index(table_attr)
    table = html[html.rindex("<table", 0, start) : html.index("</table>", start)]
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", table, flags=re.S)
    return [
        [
            html_lib.unescape(" ".join(re.sub(r"<[^>]+>", " ", c).split()))
            for c in re.findall(r"<t[hd](?:\s[^>]*)?>(.*?)</t[hd]>", r, flags=re.S)
        ]
        for r in rows
    ]
