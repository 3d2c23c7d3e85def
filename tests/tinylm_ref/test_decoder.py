"""FastDecoder (the batch-1 decode path) and the exponential-race sampler."""

import pytest
import torch
from scipy import stats

from tinylm_ref import LLM, ModelConfig, load_checkpoint
from tinylm_ref.decoder import (
    ONEDNN_MIN_BYTES,
    FastDecoder,
    fast_decoder,
    forget,
    make_projection,
    onednn_available,
)
from tinylm_ref.sampling import generate, pick_token, sample_loop

CONFIG = ModelConfig(vocab_size=300, dim=48, n_layers=3, n_heads=4, ffn_dim=96, max_seq_len=96)
BUNDLED_2_5M = "tinylm_ref/checkpoints/2.5m"


def _model_with_nontrivial_norms(seed: int = 0, config: ModelConfig = CONFIG) -> LLM:
    """Random weights and random RMSNorm gains, so folding the gains into the matrices is exercised."""
    torch.manual_seed(seed)
    model = LLM(config).eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.RMSNorm):
                module.weight.uniform_(0.5, 1.5)
    return model


@pytest.fixture
def model() -> LLM:
    """Built outside inference mode, as training builds it (so in-place updates bump versions)."""
    return _model_with_nontrivial_norms()


def _step_logits(model: LLM, decoder: FastDecoder, ids: torch.Tensor, prefix: int) -> torch.Tensor:
    cache = model.new_cache(1)
    model(ids[:, :prefix], cache=cache)
    views = decoder.layer_views(cache)
    rows = []
    for t in range(prefix, ids.shape[1]):
        rows.append(decoder.step(int(ids[0, t]), cache.length, views)[0])
        cache.length += 1
    return torch.stack(rows)


@torch.inference_mode()
def test_fast_decoder_logits_match_the_full_forward_over_a_whole_sequence(model):
    ids = torch.randint(4, CONFIG.vocab_size, (1, CONFIG.max_seq_len))
    full = model(ids)[0]
    stepped = _step_logits(model, FastDecoder(model), ids, prefix=7)
    torch.testing.assert_close(stepped, full[7:], rtol=1e-4, atol=1e-4)


@torch.inference_mode()
def test_bfloat16_decoder_keeps_bf16_matrices_and_stays_near_float32(model):
    ids = torch.randint(4, CONFIG.vocab_size, (1, 60))
    full = model(ids)[0, 10:]
    decoder = FastDecoder(model, torch.bfloat16)
    assert {layer.qkv.dtype for layer in decoder.layers} == {layer.down.dtype for layer in decoder.layers}
    assert {layer.qkv.dtype for layer in decoder.layers} == {torch.bfloat16}
    assert decoder.head.dtype == torch.float32  # bf16 logits would tie and change top-k picks
    stepped = _step_logits(model, decoder, ids, prefix=10)
    assert stepped.dtype == torch.float32
    err = (stepped - full).abs().max().item()
    assert 0 < err < 0.05 * full.abs().max().item()  # rounded (not float32), but only by bf16's precision


def test_fast_decoder_is_reused_until_a_parameter_changes(model):
    first = fast_decoder(model)
    assert fast_decoder(model) is first
    bf16 = fast_decoder(model, torch.bfloat16)
    assert bf16 is not first  # another weight dtype, another decoder, and both stay cached
    assert fast_decoder(model) is first and fast_decoder(model, torch.bfloat16) is bf16
    model.load_state_dict({k: v.clone() for k, v in model.state_dict().items()})  # in place: versions bump
    assert fast_decoder(model) is not first
    forget(model)
    assert fast_decoder(model, torch.bfloat16) is not bf16
    first = fast_decoder(model)
    with torch.no_grad():
        model.blocks[0].ffn.down.weight.mul_(2.0)  # what an optimizer step does: in place
    rebuilt = fast_decoder(model)
    assert rebuilt is not first
    ids = torch.randint(4, CONFIG.vocab_size, (1, 20))
    with torch.inference_mode():
        torch.testing.assert_close(_step_logits(model, rebuilt, ids, 5), model(ids)[0, 5:], rtol=1e-4, atol=1e-4)


def _module_decode_step(model: LLM, prompt: list[int]):
    """``next_logits`` for ``sample_loop`` driven by ``LLM.decode_step`` (the module's own step)."""
    cache = model.new_cache(1)

    def next_logits(token_id):
        if token_id is None:
            return model(torch.tensor([prompt]), cache=cache, last_only=True)[:, -1, :]
        return model.decode_step(torch.tensor([[token_id]]), cache)

    return next_logits


@torch.inference_mode()
def test_generate_gives_the_tokens_of_the_module_decode_step():
    """The fast path and ``LLM.decode_step`` sample the same tokens from the bundled 2.5m model."""
    model = load_checkpoint(BUNDLED_2_5M).model.eval()
    prompt = [1, 60, 200, 90, 33, 17]
    for seed in range(3):
        fast = generate(model, prompt, 120, 0.8, 50, torch.Generator().manual_seed(seed), eos_id=None)
        next_logits = _module_decode_step(model, prompt)
        slow = sample_loop(
            next_logits, len(prompt), 256, 120, 0.8, 50, torch.Generator().manual_seed(seed), (), torch.device("cpu")
        )
        assert fast.tokens == slow.tokens and len(fast.tokens) == 120
        torch.testing.assert_close(torch.tensor(fast.logprobs), torch.tensor(slow.logprobs), rtol=0, atol=1e-4)


@torch.inference_mode()
def test_bfloat16_generation_is_seeded_and_differs_only_by_rounding():
    model = load_checkpoint(BUNDLED_2_5M).model.eval()
    prompt = [1, 60, 200, 90, 33, 17]

    def run(dtype):
        return generate(model, prompt, 64, 0.0, None, None, eos_id=None, weight_dtype=dtype)

    a, b, f32 = run(torch.bfloat16), run(torch.bfloat16), run(torch.float32)
    assert a.tokens == b.tokens and a.logprobs == b.logprobs
    assert a.logprobs != f32.logprobs  # the bf16 matrices were used
    # greedy decoding of a trained model mostly agrees; the first token comes from the float32 prefill
    assert a.tokens[0] == f32.tokens[0]
    same = sum(x == y for x, y in zip(a.tokens, f32.tokens, strict=True))
    assert same >= 16, (a.tokens, f32.tokens)


def test_race_sampler_draws_what_multinomial_draws_for_the_same_seed():
    probs_source = torch.randn(3, 500)
    for seed in range(50):
        ours = pick_token(probs_source, 1.0, None, torch.Generator().manual_seed(seed))
        theirs = torch.multinomial(torch.softmax(probs_source, -1), 1, generator=torch.Generator().manual_seed(seed))
        assert torch.equal(ours, theirs)


def test_top_k_draws_follow_the_renormalised_distribution_and_never_leave_the_top_k():
    logits = torch.tensor([[2.0, 1.0, 0.5, 0.0, -1.0, 3.0, -2.0, 0.2]])
    temperature, k, n = 0.8, 4, 20000
    top = torch.topk(logits[0], k).indices
    expected = torch.softmax(logits[0, top] / temperature, -1)
    generator = torch.Generator().manual_seed(7)
    draws = torch.cat([pick_token(logits, temperature, k, generator) for _ in range(n)]).flatten()
    assert set(draws.tolist()) <= set(top.tolist())
    observed = torch.stack([(draws == t).sum() for t in top]).double()
    expected_counts = expected.double() / expected.double().sum() * n
    _, p_value = stats.chisquare(observed.numpy(), expected_counts.numpy())
    assert p_value > 1e-3, (observed, expected * n)


def test_greedy_is_argmax_and_rows_sample_independently():
    logits = torch.randn(5, 50)
    assert torch.equal(pick_token(logits, 0.0, 10, None)[:, 0], logits.argmax(-1))
    tokens = pick_token(logits, 1.0, 10, torch.Generator().manual_seed(0))
    assert tokens.shape == (5, 1)
    for row in range(5):
        assert tokens[row, 0] in torch.topk(logits[row], 10).indices


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_nonfinite_logits_stop_generation_without_recording_the_token(bad):
    def next_logits(token_id):
        logits = torch.zeros(1, 20)
        if token_id is not None:
            logits[0, 3] = bad
        return logits

    out = sample_loop(next_logits, 1, 64, 10, 0.8, 5, torch.Generator().manual_seed(0), (), torch.device("cpu"))
    assert out.nonfinite and out.stop_reason == "nonfinite"
    assert len(out.tokens) == 1  # the prefill's token was fine; the second step's logits were not


@pytest.mark.parametrize("shape", [(96, 48), (1024, 384), (3072, 384)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_projection_kernels_multiply_like_linear_and_follow_the_size_rule(shape, dtype):
    torch.manual_seed(0)
    weight, x, residual = torch.randn(shape), torch.randn(1, shape[1]), torch.randn(1, shape[0])
    proj = make_projection(weight, dtype, torch.device("cpu"))
    big = weight.numel() * 4 >= ONEDNN_MIN_BYTES
    expected_kernel = "onednn" if onednn_available(torch.device("cpu")) and (big or dtype != torch.float32) else "dense"
    assert proj.kernel == expected_kernel and proj.dtype == dtype
    # the reference: the same rounding of weight and input to ``dtype``, accumulated in float32
    ref = torch.nn.functional.linear(x.to(dtype).float(), weight.to(dtype).float())
    tol = 1e-4 if dtype == torch.float32 else 2e-2
    out = proj.linear(x)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, ref, rtol=tol, atol=tol * shape[1] ** 0.5)
    torch.testing.assert_close(proj.linear_add(residual, x), residual + ref, rtol=tol, atol=tol * shape[1] ** 0.5)


def test_a_tiny_temperature_is_greedy_not_nan():
    logits = torch.randn(2, 300) * 30
    for top_k in (None, 50):
        picked = pick_token(logits, 1e-40, top_k, torch.Generator().manual_seed(0))
        assert torch.equal(picked[:, 0], logits.argmax(-1))


@torch.inference_mode()
def test_a_model_cast_to_bfloat16_still_generates_through_its_own_decode_step():
    model = LLM(CONFIG).eval().to(torch.bfloat16)
    out = generate(model, [5, 6, 7], 12, 0.8, 20, torch.Generator().manual_seed(0), eos_id=None)
    assert len(out.tokens) == 12 and all(map(torch.isfinite, torch.tensor(out.logprobs)))


@torch.inference_mode()
def test_the_fast_step_refuses_positions_past_the_context(model):
    decoder, cache = FastDecoder(model), model.new_cache(1)
    with pytest.raises(ValueError, match="exceeds the context"):
        decoder.step(5, CONFIG.max_seq_len, decoder.layer_views(cache))
