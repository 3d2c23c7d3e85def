import pytest
import torch

from tinylm_ref import LLM, PRESETS, STUDY_PARAMS, ModelConfig


@pytest.mark.parametrize("name", list(PRESETS))
def test_preset_parameter_counts_within_5_percent_of_study_table1(name):
    params = LLM(PRESETS[name]).num_parameters()
    assert abs(params - STUDY_PARAMS[name]) / STUDY_PARAMS[name] < 0.05


def test_presets_follow_table1_shapes():
    assert [(c.vocab_size, c.dim, c.n_layers, c.n_heads, c.ffn_dim, c.max_seq_len) for c in PRESETS.values()] == [
        (2000, 384, 4, 4, 1536, 256),
        (1500, 224, 8, 4, 896, 256),
        (1000, 384, 2, 4, 1536, 256),
        (512, 272, 2, 4, 1088, 256),
    ]


def test_default_config_is_study_10m_and_head_is_tied():
    model = LLM(ModelConfig())
    assert model.config == PRESETS["10m"]
    assert model.head.weight is model.tok_emb.weight


def test_config_rejects_bad_values_and_unknown_keys():
    with pytest.raises(ValueError, match="divisible"):
        ModelConfig(dim=30, n_heads=4)
    with pytest.raises(ValueError, match="unknown config field"):
        ModelConfig.from_dict({"vocab_size": 10, "dimm": 8})


def test_kv_cache_logits_match_full_forward_over_whole_generation():
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=64, dim=32, n_layers=2, n_heads=4, ffn_dim=64, max_seq_len=40)
    model = LLM(cfg).eval()
    ids = torch.randint(0, 64, (1, 40))
    with torch.no_grad():
        full = model(ids)
        cache = model.new_cache(1)
        pieces = [model(ids[:, :7], cache=cache)]  # prefill
        pieces.append(model(ids[:, 7:12], cache=cache))  # a chunk after a prefix (masked path)
        for t in range(12, 40):  # one token at a time
            pieces.append(model(ids[:, t : t + 1], cache=cache))
    assert torch.allclose(torch.cat(pieces, dim=1), full, atol=1e-5)


def test_forward_rejects_sequences_beyond_context():
    model = LLM(ModelConfig(vocab_size=16, dim=8, n_layers=1, n_heads=2, ffn_dim=16, max_seq_len=4))
    with pytest.raises(ValueError, match="exceeds the context"):
        model(torch.zeros(1, 5, dtype=torch.long))


def test_compiled_static_decode_step_gives_the_eager_tokens():
    from tinylm_ref.sampling import generate

    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=64, dim=32, n_layers=2, n_heads=4, ffn_dim=64, max_seq_len=48)
    model = LLM(cfg).eval()
    eager = generate(model, [1, 5, 9], 30, 0.8, 10, torch.Generator().manual_seed(3), eos_id=None)
    with torch.no_grad():  # the static step matches the dynamic one before compiling
        c1, c2 = model.new_cache(1), model.new_cache(1)
        model(torch.tensor([[1, 5]]), cache=c1)
        model(torch.tensor([[1, 5]]), cache=c2)
        a = model.decode_step(torch.tensor([[9]]), c1)
        b = model.decode_step_static(torch.tensor([[9]]), torch.tensor(2), c2.k, c2.v)
    assert torch.allclose(a, b, atol=1e-5)
    model.compile_decode()
    compiled = generate(model, [1, 5, 9], 30, 0.8, 10, torch.Generator().manual_seed(3), eos_id=None)
    assert compiled.tokens == eager.tokens
    assert max(abs(x - y) for x, y in zip(compiled.logprobs, eager.logprobs, strict=True)) < 1e-4


@pytest.mark.parametrize("batch", [1, 3])
def test_decode_step_matches_full_forward(batch):
    torch.manual_seed(1)
    model = LLM(ModelConfig(vocab_size=64, dim=32, n_layers=2, n_heads=4, ffn_dim=64, max_seq_len=40)).eval()
    ids = torch.randint(0, 64, (batch, 30))
    with torch.no_grad():
        full = model(ids)
        cache = model.new_cache(batch)
        model(ids[:, :5], cache=cache)
        steps = torch.stack([model.decode_step(ids[:, t : t + 1], cache) for t in range(5, 30)], dim=1)
    assert torch.allclose(steps, full[:, 5:], atol=1e-5)
