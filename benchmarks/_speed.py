"""Measurement helpers for ``decode_speed.py``: the four decode paths and the harness-overhead run.

Every path returns a ``Timing``: the start of the prefill, the host time each generated token was
available (``time.perf_counter_ns``), and the end. TTFT is ``times[0] - start``; decode tokens/s is
``(n - 1) / (times[-1] - times[0])`` (docs/metrics.md ``decode_tps``); end-to-end is ``n / (end - start)``.
"""

from __future__ import annotations

import functools
import io
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from harness.types import SamplingParams
from tinylm_ref.decoder import make_projection, onednn_available
from tinylm_ref.fused_decoder import FusedDecoder
from tinylm_ref.native import load_kernel
from tinylm_ref.sampling import generate

TEMPERATURE, TOP_K = 0.8, 50


@dataclass
class Timing:
    start_ns: int
    times_ns: list[int]
    end_ns: int

    @property
    def n(self) -> int:
        return len(self.times_ns)

    def ttft_ms(self) -> float:
        return (self.times_ns[0] - self.start_ns) / 1e6

    def decode_tps(self) -> float:
        return (self.n - 1) / ((self.times_ns[-1] - self.times_ns[0]) / 1e9)

    def e2e_tps(self) -> float:
        return self.n / ((self.end_ns - self.start_ns) / 1e9)


def summarize(timings: list[Timing]) -> dict[str, Any]:
    """Medians (and the raw values) over repetitions."""
    ttft = [t.ttft_ms() for t in timings]
    dec = [t.decode_tps() for t in timings]
    e2e = [t.e2e_tps() for t in timings]
    return {
        "ttft_ms": statistics.median(ttft),
        "decode_tps": statistics.median(dec),
        "e2e_tps": statistics.median(e2e),
        "decode_tps_min": min(dec),
        "decode_tps_max": max(dec),
        "tokens": [t.n for t in timings],
        "raw": {"ttft_ms": ttft, "decode_tps": dec, "e2e_tps": e2e},
    }


# ------------------------------------------------------------------ (1) the harness's generation path
def run_reference(model: Any, prompt_ids: list[int], n: int, seed: int) -> Timing:
    """``TinyLMModel.generate`` exactly as ``SuiteRun`` calls it (EOS switched off by the caller)."""
    params = SamplingParams(temperature=TEMPERATURE, top_k=TOP_K, max_new_tokens=n, seed=seed)
    gen = model.generate(prompt_ids, params, torch.Generator(device="cpu").manual_seed(seed))
    if len(gen.tokens) != n:
        raise RuntimeError(f"reference path stopped after {len(gen.tokens)} tokens ({gen.stop_reason})")
    return Timing(gen.start_ns, list(gen.token_times_ns), gen.end_ns)


def run_reference_eager(model: Any, prompt_ids: list[int], n: int, seed: int) -> Timing:
    """The same generation with the fused step switched off: ``FastDecoder``, the fallback without a C compiler."""
    generator = torch.Generator(device="cpu").manual_seed(seed)
    gen = generate(model.model, prompt_ids, n, TEMPERATURE, TOP_K, generator, None, fused=False)
    if len(gen.tokens) != n:
        raise RuntimeError(f"eager path stopped after {len(gen.tokens)} tokens ({gen.stop_reason})")
    return Timing(gen.start_ns, list(gen.token_times_ns), gen.end_ns)


# ------------------------------------------------------------------ (2) the study's shape: no KV cache
@torch.inference_mode()
def run_naive(llm: torch.nn.Module, prompt_ids: list[int], n: int, seed: int) -> Timing:
    """Re-run the whole sequence every step, take the last logits, top-k sample, append."""
    generator = torch.Generator(device="cpu").manual_seed(seed)
    idx = torch.tensor([prompt_ids], dtype=torch.long)
    times = []
    start = time.perf_counter_ns()
    for _ in range(n):
        logits = llm(idx)[:, -1, :] / TEMPERATURE
        kth = torch.topk(logits, TOP_K).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
        token = torch.multinomial(torch.softmax(logits, dim=-1), 1, generator=generator)
        idx = torch.cat([idx, token], dim=1)
        token.item()  # the token is on the host
        times.append(time.perf_counter_ns())
    return Timing(start, times, time.perf_counter_ns())


# ------------------------------------------------------------------ (3) Hugging Face transformers
def build_hf_llama(config: Any) -> torch.nn.Module:
    """A randomly initialised ``LlamaForCausalLM`` with the preset's shape (RoPE instead of learned positions)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from harness.backends.hf_export import llama_shape

    hf_config = LlamaConfig(
        **llama_shape(config),
        tie_word_embeddings=True,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    )
    torch.manual_seed(0)
    return LlamaForCausalLM(hf_config).eval()


def _timing_streamer() -> Any:
    from transformers.generation.streamers import BaseStreamer

    class TimingStreamer(BaseStreamer):
        """``generate`` calls ``put`` once with the prompt, then once per step with the sampled token ids."""

        def __init__(self) -> None:
            self.times: list[int] = []
            self.seen_prompt = False

        def put(self, value: torch.Tensor) -> None:
            if not self.seen_prompt:
                self.seen_prompt = True
                return
            self.times.append(time.perf_counter_ns())

        def end(self) -> None:
            pass

    return TimingStreamer()


def run_hf(hf_model: torch.nn.Module, prompt_ids: list[int], n: int, seed: int) -> Timing:
    """``generate()`` with a streamer stamping each sampled token; TTFT includes generate()'s own set-up."""
    torch.manual_seed(seed)
    streamer = _timing_streamer()
    input_ids = torch.tensor([prompt_ids], dtype=torch.long)
    attention_mask = torch.ones_like(input_ids)
    start = time.perf_counter_ns()
    out = hf_model.generate(
        input_ids,
        attention_mask=attention_mask,
        do_sample=True,
        top_k=TOP_K,
        temperature=TEMPERATURE,
        max_new_tokens=n,
        min_new_tokens=n,
        pad_token_id=0,
        streamer=streamer,
    )
    end = time.perf_counter_ns()
    if out.shape[1] - len(prompt_ids) != n or len(streamer.times) != n:
        raise RuntimeError(
            f"HF generate produced {out.shape[1] - len(prompt_ids)} tokens, {len(streamer.times)} stamps"
        )
    return Timing(start, streamer.times, end)


# ------------------------------------------------------------------ (4) the floor: matrix-vector products alone
def floor_weights(llm: torch.nn.Module) -> list[list[torch.Tensor]]:
    """Per layer [qkv, proj, gate_up, down], then [head]: the weights one decode step multiplies by."""
    layers = [[b.attn.qkv.weight, b.attn.proj.weight, b.ffn.gate_up.weight, b.ffn.down.weight] for b in llm.blocks]
    return [*layers, [llm.head.weight]]


def _floor_products(
    flat: list[torch.Tensor], variant: str, dtype: torch.dtype
) -> list[tuple[int, Callable[[torch.Tensor], Any]]]:
    """(input width, product function) per weight for one floor variant; inputs are already ``dtype``."""
    if variant == "linear":
        ws = [w.detach().to(dtype) for w in flat]
        return [(w.shape[1], functools.partial(F.linear, weight=w)) for w in ws]
    if variant == "mv":
        ws = [w.detach().to(dtype) for w in flat]
        outs = [torch.empty(w.shape[0], dtype=dtype) for w in ws]
        return [(w.shape[1], lambda x, w=w, o=o: torch.mv(w, x[0], out=o)) for w, o in zip(ws, outs, strict=True)]
    if variant == "mmT":
        ws = [w.detach().t().contiguous().to(dtype) for w in flat]
        return [(w.shape[0], lambda x, w=w: torch.mm(x, w)) for w in ws]
    if variant == "onednn":
        packed = [torch.ops.mkldnn._reorder_linear_weight(w.detach().to(dtype).contiguous(), 1) for w in flat]
        op = torch.ops.mkldnn._linear_pointwise
        return [(w.shape[1], lambda x, p=p: op(x, p, None, "none", [], "")) for w, p in zip(flat, packed, strict=True)]
    if variant == "sized":  # FastDecoder's per-matrix choice (float32 only)
        return [(w.shape[1], make_projection(w.detach().float(), dtype, torch.device("cpu")).linear) for w in flat]
    raise ValueError(f"unknown floor variant {variant!r}")


def floor_variants(dtype: torch.dtype) -> tuple[str, ...]:
    variants = ("linear", "mv", "mmT")
    if onednn_available(torch.device("cpu")):
        variants += ("onednn", "sized") if dtype == torch.float32 else ("onednn",)
    if dtype == torch.float32 and load_kernel() is not None:
        variants += ("panels",)
    return variants


def run_floor_panels(decoder: FusedDecoder, prompt_len: int, n: int) -> Timing:
    """The fused step's own matrix-vector products (same panels, threads and barriers) without the norms,
    attention, activation or sampling: what (1) would reach if everything else were free. Its TTFT is one
    step's products, not a prefill."""
    start = time.perf_counter_ns()
    decoder.matvecs_only()
    times = [time.perf_counter_ns()]
    for _ in range(n - 1):
        decoder.matvecs_only()
        times.append(time.perf_counter_ns())
    return Timing(start, times, time.perf_counter_ns())


@torch.inference_mode()
def run_floor(
    weights: list[list[torch.Tensor]], prompt_len: int, n: int, variant: str, dtype: torch.dtype = torch.float32
) -> Timing:
    """Prefill = the same weights on a (prompt_len, in) matrix; each token = every matvec once, then the head.

    Variants (the weights' layout and kernel): "linear" ``F.linear`` on a 1×in row (the module layout);
    "mv" ``torch.mv`` into a preallocated output; "mmT" ``torch.mm`` with a pre-transposed contiguous copy;
    "onednn" every matrix pre-packed for oneDNN; "sized" ``FastDecoder``'s choice per matrix (packed from
    1 MB, else mmT). No data dependence, sampling or bookkeeping: arithmetic + dispatch. ``dtype`` bfloat16
    times the same products with bf16 weights and inputs.
    """
    flat = [w for group in weights for w in group]
    products = _floor_products(flat, variant, dtype)
    vec = {k: torch.randn(1, k, dtype=dtype) for k, _ in products}
    mat = {k: torch.randn(prompt_len, k, dtype=dtype) for k, _ in products}
    times = []
    start = time.perf_counter_ns()
    for k, product in products[:-1]:
        product(mat[k]) if variant != "mv" else product(mat[k][-1:])
    products[-1][1](mat[products[-1][0]][-1:])
    times.append(time.perf_counter_ns())
    for _ in range(n - 1):
        for k, product in products:
            product(vec[k])
        times.append(time.perf_counter_ns())
    return Timing(start, times, time.perf_counter_ns())


# ------------------------------------------------------------------ harness overhead
def overhead_suite_yaml(n_prompts: int, tokens: int) -> str:
    import yaml

    openings = [
        "Once upon a time, in a small village by the sea,",
        "One sunny morning, a little bird",
        "Lily was a curious girl who loved",
        "Tom had a best friend named",
        "He ran to the door and",
        "She jumped into the puddle and",
        '"Can I play with you?" asked the little girl.',
        '"Look at that!" said Tom.',
    ]
    prompts = [
        {
            "id": f"p{i:02d}",
            "category": "speed",
            "text": openings[i % len(openings)] + ("" if i < len(openings) else " Then"),
        }
        for i in range(n_prompts)
    ]
    return yaml.safe_dump(
        {
            "name": "decode-speed-overhead",
            "samples_per_prompt": 1,
            "sampling": {"temperature": TEMPERATURE, "top_k": TOP_K, "max_new_tokens": tokens, "seed": 1234},
            "warmup": 1,
            "device": "cpu",
            "prompts": prompts,
        },
        sort_keys=False,
    )


def measure_overhead(
    model_specs: list[str], n_prompts: int, tokens: int, threads: int | None, base_dir: Path | None = None
) -> list[dict[str, Any]]:
    """Run a real suite in-process through ``SuiteRun`` and split each model's post-load wall time.

    generation = Σ over samples of (end_ns - start_ns), read back from samples.jsonl ``end_ms``, plus the
    warmup generations (timed by wrapping ``SuiteRun._warmup``); overhead = the rest of ``wall_s - load_s``
    (prompt encoding, generator set-up, metrics, record building, text decoding, fsynced appends, model-level
    metrics, manifest writes, close). ``os.fsync`` is wrapped for the duration of the run to report how much
    of the overhead is the run directory's per-sample durability (it depends on the disk under ``base_dir``).
    """
    from rich.console import Console

    from harness import model_pass
    from harness.plugins import get_registry
    from harness.records import load_run
    from harness.runner import RunOptions, SuiteRun
    from harness.suite import load_suite

    real_warm_up = model_pass.warm_up

    fsyncs: list[tuple[float, float]] = []  # (start, duration) of every os.fsync during the run
    real_fsync = os.fsync

    def timed_fsync(fd: int) -> None:
        t0 = time.perf_counter()
        real_fsync(fd)
        fsyncs.append((t0, time.perf_counter() - t0))

    class TimedRun(SuiteRun):
        """Records when each model's ``_run_model`` began (and, via ``timed_warm_up``, when its warmup ran)."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.entered: dict[str, float] = {}
            self.warmup: dict[str, tuple[float, float]] = {}

        def _run_model(self, spec: str, *args: Any, **kwargs: Any) -> Any:
            self.entered[spec] = time.perf_counter()
            return super()._run_model(spec, *args, **kwargs)

    with tempfile.TemporaryDirectory(prefix="decode-speed-", dir=base_dir) as tmp:
        suite_path = Path(tmp) / "suite.yaml"
        suite_path.write_text(overhead_suite_yaml(n_prompts, tokens), encoding="utf-8")
        run_dir = Path(tmp) / "run"
        run_dir.mkdir()
        options = RunOptions(device="cpu", threads=threads, progress=False, command=["benchmarks/decode_speed.py"])
        suite_run = TimedRun(
            load_suite(suite_path), model_specs, run_dir, get_registry(None), options, Console(file=io.StringIO())
        )

        def timed_warm_up(model: Any, sampling: Any, rounds: int) -> None:
            t0 = time.perf_counter()
            real_warm_up(model, sampling, rounds)
            suite_run.warmup[model.info.name] = (t0, time.perf_counter())

        os.fsync, model_pass.warm_up = timed_fsync, timed_warm_up
        try:
            code = suite_run.execute()
        finally:
            os.fsync, model_pass.warm_up = real_fsync, real_warm_up
        if code != 0:
            raise RuntimeError(f"overhead suite run failed (exit {code}): {[o.error for o in suite_run.outcomes]}")
        run = load_run(run_dir)
        manifest, samples = run.manifest.to_json(), run.samples
    results = []
    for entry in manifest["models"]:
        name = entry["name"]
        mine = [s for s in samples if s["model"] == name]
        outcome = next(o for o in suite_run.outcomes if o.name == name)
        wall = outcome.wall_s  # unrounded; the manifest's wall_s is the same rounded to ms
        after_load = wall - entry["load_s"]
        gen = sum(s["end_ms"] for s in mine) / 1e3
        warm_start, warm_end = suite_run.warmup[name]
        warm = warm_end - warm_start
        wall_end = suite_run.entered[name] + wall
        fsync = sum(d for t, d in fsyncs if warm_end <= t < wall_end)
        outside = after_load - warm - gen
        results.append(
            {
                "model": name,
                "samples": len(mine),
                "tokens": sum(len(s["output_ids"]) for s in mine),
                "wall_s": wall,
                "manifest_wall_s": entry["wall_s"],
                "load_s": entry["load_s"],
                "warmup_s": warm,
                "generation_s": gen,
                "outside_s": outside,
                "fsync_s": fsync,
                "overhead_share": outside / (after_load - warm),
                "overhead_share_without_fsync": (outside - fsync) / (after_load - warm),
                "overhead_share_warmup_counted": (outside + warm) / after_load,
                "overhead_ms_per_sample": 1e3 * outside / max(len(mine), 1),
            }
        )
    return results
