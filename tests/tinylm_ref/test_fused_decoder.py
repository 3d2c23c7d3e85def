"""The fused decode step (csrc/fused_step.c): same math as the full forward, built once per machine, and a
clean fallback to FastDecoder when it cannot be built."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.tinylm_ref.test_decoder import _model_with_nontrivial_norms
from tinylm_ref import LLM, ModelConfig, load_checkpoint, native
from tinylm_ref.decoder import FastDecoder, decode_kernel, step_decoder
from tinylm_ref.fused_decoder import FusedDecoder, fused_decoder_for
from tinylm_ref.sampling import generate

REPO = Path(__file__).resolve().parents[2]
needs_kernel = pytest.mark.skipif(
    native.load_kernel() is None, reason=f"fused kernel unavailable: {native.unavailable_reason()}"
)

#: odd shapes on purpose: ffn not a multiple of 32, vocab and 3*dim not multiples of 64, head_dim odd
SHAPES = {
    "odd": ModelConfig(vocab_size=97, dim=36, n_layers=2, n_heads=4, ffn_dim=50, max_seq_len=40),
    "one-head": ModelConfig(vocab_size=130, dim=27, n_layers=3, n_heads=1, ffn_dim=33, max_seq_len=40),
    "preset-like": ModelConfig(vocab_size=512, dim=272, n_layers=2, n_heads=4, ffn_dim=1088, max_seq_len=64),
}


def _random_model(config: ModelConfig, seed: int = 0) -> LLM:
    return _model_with_nontrivial_norms(seed, config)


@torch.inference_mode()
def _fused_logits(model: LLM, decoder: FusedDecoder, ids: torch.Tensor, prefix: int) -> torch.Tensor:
    cache = model.new_cache(1)
    model(ids[:, :prefix], cache=cache)
    decoder.layer_views(cache)
    rows = []
    for t in range(prefix, ids.shape[1]):
        rows.append(decoder.step(int(ids[0, t]), t, cache)[0].clone())
        cache.length = t + 1
    return torch.stack(rows)


@pytest.fixture
def fresh_kernel_state():
    """Tests that change how the kernel loads start and end with nothing loaded."""
    native.reset()
    yield
    native.reset()


@needs_kernel
@pytest.mark.parametrize("shape", SHAPES)
def test_fused_logits_match_the_full_forward_at_every_position(shape):
    config = SHAPES[shape]
    model = _random_model(config)
    ids = torch.randint(0, config.vocab_size, (1, config.max_seq_len), generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        full = model(ids)[0, 3:]
    fused = _fused_logits(model, fused_decoder_for(model), ids, prefix=3)
    assert fused.shape == full.shape
    torch.testing.assert_close(fused, full, rtol=1e-5, atol=1e-5 * full.abs().max().item())


@needs_kernel
@pytest.mark.parametrize("shape", SHAPES)
def test_fused_prefill_matches_the_full_forward_and_fills_the_cache(shape):
    """The prompt in one call: the last position's logits, and a cache the decode steps continue from."""
    config = SHAPES[shape]
    model = _random_model(config)
    ids = torch.randint(0, config.vocab_size, (1, config.max_seq_len), generator=torch.Generator().manual_seed(5))
    with torch.inference_mode():
        full = model(ids)[0]
    decoder = fused_decoder_for(model)
    scale = full.abs().max().item()
    for length in (1, 2, 13):  # one token, a single pair of rows, an odd count
        cache = model.new_cache(1)
        first = decoder.prefill(ids[0, :length].tolist(), cache)[0].clone()
        assert cache.length == length
        torch.testing.assert_close(first, full[length - 1], rtol=1e-5, atol=1e-5 * scale)
        for t in range(length, length + 5):
            logits = decoder.step(int(ids[0, t]), t, cache)[0]
            cache.length = t + 1
            torch.testing.assert_close(logits, full[t], rtol=1e-5, atol=1e-5 * scale)
        more = decoder.prefill(ids[0, length + 5 : length + 9].tolist(), cache)[0]  # a prefill that continues
        torch.testing.assert_close(more, full[length + 8], rtol=1e-5, atol=1e-5 * scale)


@needs_kernel
def test_fused_prefill_refuses_what_it_cannot_run():
    model = _random_model(SHAPES["odd"])
    decoder = fused_decoder_for(model)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        decoder.prefill([1, SHAPES["odd"].vocab_size], model.new_cache(1))
    with pytest.raises(ValueError, match="exceeds the context"):
        decoder.prefill([1] * (SHAPES["odd"].max_seq_len + 1), model.new_cache(1))
    bf16 = fused_decoder_for(model, torch.bfloat16)
    assert not bf16.prefills  # a bf16 run's prefill stays float32, in LLM.forward
    with pytest.raises(ValueError, match="bfloat16"):
        bf16.prefill([1, 2], model.new_cache(1))


@needs_kernel
def test_bf16_matrices_round_where_fast_decoder_rounds():
    """--dtype bfloat16: the layer matrices and their inputs and outputs in bf16, the head in float32. The
    fused step quantises at the same points as FastDecoder's bf16 mode, so the two differ only where a float32
    sum's last bit tips a bf16 rounding (a few bf16 ulps at most), far less than bf16 differs from float32."""
    config = SHAPES["preset-like"]
    model = _random_model(config)
    ids = torch.randint(0, config.vocab_size, (1, 40), generator=torch.Generator().manual_seed(3))
    fused_bf16 = fused_decoder_for(model, torch.bfloat16)
    # the layer matrices take half the bytes (bf16 bit patterns), the float32 head does not
    assert fused_bf16.matrix_bytes < 0.6 * fused_decoder_for(model).matrix_bytes
    got = _fused_logits(model, fused_bf16, ids, prefix=4)
    eager = step_decoder(model, torch.bfloat16, fused=False)
    cache = model.new_cache(1)
    with torch.inference_mode():
        model(ids[:, :4], cache=cache)
        views = eager.layer_views(cache)
        want = []
        for t in range(4, 40):
            want.append(eager.step(int(ids[0, t]), t, views)[0])
            cache.length = t + 1
    want = torch.stack(want)
    with torch.inference_mode():
        full = model(ids)[0, 4:]
    scale = full.abs().max().item()
    to_eager, to_float32 = (got - want).abs().max().item() / scale, (got - full).abs().max().item() / scale
    assert to_eager < 1e-2
    assert 1e-4 < to_float32 < 5e-2  # bf16 really is in use, and stays close


@needs_kernel
def test_fused_steps_are_bitwise_the_same_at_one_and_two_threads():
    """Each output is summed by one thread in a fixed order, so the thread policy cannot move a decode step's
    log-probs (the prompt's prefill runs in PyTorch, whose reductions can: it runs once, before the split)."""
    config = SHAPES["preset-like"]
    model = _random_model(config)
    ids = torch.randint(0, config.vocab_size, (1, 30), generator=torch.Generator().manual_seed(2))
    decoder = fused_decoder_for(model)
    prefilled = model.new_cache(1)
    with torch.inference_mode():
        model(ids[:, :5], cache=prefilled)
    before = torch.get_num_threads()
    results = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            cache = model.new_cache(1)
            cache.k.copy_(prefilled.k)
            cache.v.copy_(prefilled.v)
            decoder.layer_views(cache)
            results.append(torch.stack([decoder.step(int(ids[0, t]), t, cache)[0].clone() for t in range(5, 30)]))
    finally:
        torch.set_num_threads(before)
    assert torch.equal(results[0], results[1])


@needs_kernel
@pytest.mark.parametrize("preset", ["2.5m", "10m"])
def test_generation_uses_the_fused_step_and_samples_the_eager_tokens(preset):
    """On the bundled checkpoints the fused step samples exactly FastDecoder's tokens (the CI baseline's)."""
    ckpt = load_checkpoint(REPO / "tinylm_ref" / "checkpoints" / preset)
    model = ckpt.model.eval()
    assert decode_kernel(model) == decode_kernel(model, torch.bfloat16) == {"kernel": "fused", "reason": None}
    assert isinstance(step_decoder(model), FusedDecoder) and isinstance(
        step_decoder(model, torch.bfloat16), FusedDecoder
    )
    assert isinstance(step_decoder(model, fused=False), FastDecoder)
    prompt = ckpt.tokenizer.encode("Once upon a time, there was a little dog.").ids
    for seed in range(3):
        runs = [
            generate(model, prompt, 96, generator=torch.Generator().manual_seed(seed), fused=fused)
            for fused in (True, False)
        ]
        assert runs[0].tokens == runs[1].tokens
        assert len(runs[0].tokens) > 0
        assert max(abs(a - b) for a, b in zip(runs[0].logprobs, runs[1].logprobs, strict=True)) < 1e-4


@needs_kernel
def test_the_decoder_is_rebuilt_after_a_weight_update():
    model = _random_model(SHAPES["odd"])
    first = step_decoder(model)
    assert step_decoder(model) is first
    with torch.no_grad():
        model.head.weight.mul_(2.0)
    assert step_decoder(model) is not first


@needs_kernel
def test_a_token_outside_the_vocabulary_is_refused_not_read():
    model = _random_model(SHAPES["odd"])
    decoder = fused_decoder_for(model)
    cache = model.new_cache(1)
    decoder.layer_views(cache)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        decoder.step(SHAPES["odd"].vocab_size, 0, cache)
    with pytest.raises(ValueError, match="exceeds the context"):
        decoder.step(0, SHAPES["odd"].max_seq_len, cache)


@needs_kernel
def test_a_batched_cache_is_refused():
    model = _random_model(SHAPES["odd"])
    with pytest.raises(ValueError, match="one sequence"):
        fused_decoder_for(model).layer_views(model.new_cache(2))


def test_without_a_compiler_it_falls_back_to_fast_decoder(fresh_kernel_state, monkeypatch, tmp_path):
    monkeypatch.setenv("CC", "")
    monkeypatch.setenv("TINYLM_KERNEL_CACHE", str(tmp_path))
    model = _random_model(SHAPES["odd"])
    assert native.load_kernel() is None
    assert decode_kernel(model) == {
        "kernel": "eager",
        "reason": "no C compiler found (install gcc or clang, or set CC)",
    }
    assert isinstance(step_decoder(model), FastDecoder)
    out = generate(model, [1, 2, 3], 8, generator=torch.Generator().manual_seed(0))
    assert len(out.tokens) > 0
    assert list(tmp_path.iterdir()) == []


def test_a_failing_compiler_is_reported_and_leaves_no_file(fresh_kernel_state, monkeypatch, tmp_path):
    monkeypatch.setenv("CC", "false")  # exits 1 for any arguments
    monkeypatch.setenv("TINYLM_KERNEL_CACHE", str(tmp_path))
    assert native.load_kernel() is None
    assert native.unavailable_reason().startswith("false failed")
    assert decode_kernel(_random_model(SHAPES["odd"]))["kernel"] == "eager"
    assert list(tmp_path.iterdir()) == []  # the temporary output was removed


@needs_kernel
def test_a_compiler_without_openmp_builds_a_single_threaded_step(fresh_kernel_state, monkeypatch, tmp_path):
    compiler = tmp_path / "cc-without-openmp"
    compiler.write_text(
        '#!/bin/sh\nfor a in "$@"; do [ "$a" = "-fopenmp" ] && { echo "unsupported option -fopenmp" >&2; exit 1; }; done\n'
        f'exec {native.find_compiler()} "$@"\n'
    )
    compiler.chmod(0o755)
    model = _random_model(SHAPES["odd"])
    ids = torch.randint(0, SHAPES["odd"].vocab_size, (1, 20), generator=torch.Generator().manual_seed(4))
    with_openmp = _fused_logits(model, fused_decoder_for(model), ids, prefix=3)
    native.reset()
    monkeypatch.setenv("CC", str(compiler))
    monkeypatch.setenv("TINYLM_KERNEL_CACHE", str(tmp_path / "kernels"))
    assert native.load_kernel() is not None
    kernel = decode_kernel(model)
    assert kernel["kernel"] == "fused" and kernel["reason"].startswith("built without OpenMP, one thread")
    assert "unsupported option -fopenmp" in kernel["reason"]
    serial = _fused_logits(model, fused_decoder_for(model), ids, prefix=3)
    torch.testing.assert_close(serial, with_openmp, rtol=1e-6, atol=1e-6)
    native.reset()  # a later process finds the serial build in the cache and does not try OpenMP again
    assert native.load_kernel() is not None and native.build_note() == "built without OpenMP, one thread"
    assert len(list((tmp_path / "kernels").iterdir())) == 1


def test_the_fused_step_can_be_switched_off(fresh_kernel_state, monkeypatch):
    monkeypatch.setenv("TINYLM_FUSED", "0")
    assert native.load_kernel() is None
    assert "TINYLM_FUSED=0" in native.unavailable_reason()
    assert decode_kernel(_random_model(SHAPES["odd"]))["kernel"] == "eager"


_CHILD = """
import json, sys, torch
from tinylm_ref import LLM, ModelConfig, native
from tinylm_ref.fused_decoder import fused_decoder_for
torch.manual_seed(0)
model = LLM(ModelConfig(vocab_size=97, dim=36, n_layers=2, n_heads=4, ffn_dim=50, max_seq_len=40)).eval()
decoder = fused_decoder_for(model)
cache = model.new_cache(1)
decoder.layer_views(cache)
with torch.inference_mode():
    logits = decoder.step(5, 0, cache)[0].tolist() if decoder else None
print(json.dumps({"reason": native.unavailable_reason(), "logits": logits}))
"""


@needs_kernel
def test_concurrent_first_builds_share_one_cached_library(tmp_path):
    """Processes that build at the same moment each write a private file and rename it into place."""
    env = {**os.environ, "TINYLM_KERNEL_CACHE": str(tmp_path / "kernels"), "OMP_NUM_THREADS": "1"}
    children = [
        subprocess.Popen([sys.executable, "-c", _CHILD], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        for _ in range(3)
    ]
    results = []
    for child in children:
        out, err = child.communicate(timeout=600)
        assert child.returncode == 0, err.decode()
        results.append(json.loads(out))
    assert [r["reason"] for r in results] == [None, None, None]
    assert results[0]["logits"] == results[1]["logits"] == results[2]["logits"]
    files = sorted(p.name for p in (tmp_path / "kernels").iterdir())
    assert len(files) == 1 and files[0].startswith("fused_step-") and files[0].endswith(".so")
