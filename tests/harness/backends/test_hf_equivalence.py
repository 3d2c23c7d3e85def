"""The two backends give the same log-probs for the same weights, so their numbers sit in one table.

Two routes (docs/backends.md, "Cross-backend equivalence"):

1. Full architecture: a trained tinylm checkpoint exported with ``export_tinylm_to_hf`` (a transformers
   re-implementation of tinylm_ref, model_type ``tinylm_ref``) and loaded as ``hf:org/name`` from the Hub
   cache, against the same checkpoint through the ``tinylm`` backend.
2. A built-in transformers architecture with no harness code in it: SmolLM3 with every layer NoPE is
   tinylm_ref without position embeddings (RMSNorm, SwiGLU, tied head), so a tinylm checkpoint whose
   position table is zeroed converts to it exactly.

And a suite run through the CLI over Hub-cache models of both backends, with an ``hf:`` judge.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from harness.backends.hf_export import MODELING_FILE, export_tinylm_to_hf, llama_shape
from harness.errors import UserError
from harness.types import LoadOptions, SamplingParams
from tests.ceilings import HANG_S
from tests.harness.backends.hub_cache import put_in_hub_cache
from tests.harness.test_runner import harness
from tinylm_ref.checkpoint import load_checkpoint, save_checkpoint
from tinylm_ref.config import ModelConfig
from tinylm_ref.model import LLM

ORG = "tiny-org"
COMMIT = "c" * 40
CPU = LoadOptions(device="cpu")
PROMPTS = [
    "Once upon a time",
    "Lily was a curious girl who loved",
    '"Look at that!" said Tom.',
    "He ran to the door and",
]


def to_nope_smollm3(model: LLM, eps: float):
    """tinylm_ref -> SmolLM3ForCausalLM with no RoPE anywhere: split the fused qkv and gate_up matrices."""
    from transformers import SmolLM3Config, SmolLM3ForCausalLM

    cfg = model.config
    assert not model.pos_emb.weight.any(), "only a position-free tinylm model has a NoPE equivalent"
    config = SmolLM3Config(
        **llama_shape(cfg),
        rms_norm_eps=eps,
        tie_word_embeddings=True,
        no_rope_layers=[0] * cfg.n_layers,
        use_sliding_window=False,
        attention_bias=False,
        mlp_bias=False,
        pad_token_id=0,
        eos_token_id=1,
        bos_token_id=2,
    )
    hf = SmolLM3ForCausalLM(config)
    state = {
        "model.embed_tokens.weight": model.tok_emb.weight,
        "model.norm.weight": model.norm.weight,
        "lm_head.weight": model.tok_emb.weight,
    }
    for i, block in enumerate(model.blocks):
        p = f"model.layers.{i}."
        q, k, v = block.attn.qkv.weight.split(cfg.dim, dim=0)
        gate, up = block.ffn.gate_up.weight.split(cfg.ffn_dim, dim=0)
        state.update(
            {
                p + "input_layernorm.weight": block.attn_norm.weight,
                p + "self_attn.q_proj.weight": q,
                p + "self_attn.k_proj.weight": k,
                p + "self_attn.v_proj.weight": v,
                p + "self_attn.o_proj.weight": block.attn.proj.weight,
                p + "post_attention_layernorm.weight": block.ffn_norm.weight,
                p + "mlp.gate_proj.weight": gate,
                p + "mlp.up_proj.weight": up,
                p + "mlp.down_proj.weight": block.ffn.down.weight,
            }
        )
    hf.load_state_dict({k: v.detach().clone() for k, v in state.items()}, strict=True)
    return hf


@pytest.fixture(scope="session")
def pairs(tmp_path_factory, tiny_checkpoint, tiny_tokenizer) -> dict[str, tuple[str, str]]:
    """name -> (tinylm spec, hf spec) over identical weights; HF_HOME is the returned dict's 'home'."""
    from transformers import PreTrainedTokenizerFast

    home = tmp_path_factory.mktemp("hf_home_eq")
    root = tmp_path_factory.mktemp("eq_build")
    trained = load_checkpoint(tiny_checkpoint).model
    export_tinylm_to_hf(trained, tiny_tokenizer, root / "export-tied", remote_code=True)
    put_in_hub_cache(home / "hub", f"{ORG}/tinylm-tied", root / "export-tied", COMMIT)

    torch.manual_seed(3)
    untied = LLM(
        ModelConfig(vocab_size=320, dim=48, n_layers=3, n_heads=3, ffn_dim=96, max_seq_len=72, tie_weights=False)
    )
    save_checkpoint(untied, tiny_tokenizer, root / "ckpt-untied")
    export_tinylm_to_hf(untied, tiny_tokenizer, root / "export-untied")
    put_in_hub_cache(home / "hub", f"{ORG}/tinylm-untied", root / "export-untied", COMMIT)

    nope = load_checkpoint(tiny_checkpoint).model
    with torch.no_grad():
        nope.pos_emb.weight.zero_()
        for norm in [b.attn_norm for b in nope.blocks] + [b.ffn_norm for b in nope.blocks] + [nope.norm]:
            norm.weight.normal_(1.0, 0.1)  # non-trivial norm weights, so their mapping is really tested
    save_checkpoint(nope, tiny_tokenizer, root / "ckpt-nope")
    smol = to_nope_smollm3(nope, eps=torch.finfo(torch.float32).eps)
    smol.save_pretrained(root / "smollm3")
    PreTrainedTokenizerFast(
        tokenizer_object=tiny_tokenizer, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>", unk_token="<unk>"
    ).save_pretrained(root / "smollm3")
    put_in_hub_cache(home / "hub", f"{ORG}/smollm3-nope", root / "smollm3", COMMIT)
    return {
        "home": (str(home), ""),
        "tied": (f"tinylm:{tiny_checkpoint}", f"hf:{ORG}/tinylm-tied"),
        "untied": (f"tinylm:{root / 'ckpt-untied'}", f"hf:{ORG}/tinylm-untied"),
        "smollm3": (f"tinylm:{root / 'ckpt-nope'}", f"hf:{ORG}/smollm3-nope"),
    }


@pytest.fixture(autouse=True)
def offline(monkeypatch, pairs):
    monkeypatch.setenv("HF_HOME", pairs["home"][0])
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def no_network(*args, **kwargs):
        raise AssertionError(f"a test tried to open a network connection: {args}")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)


def load_both(pairs, name):
    from harness.models import load_model
    from harness.plugins import get_registry

    tinylm_spec, hf_spec = pairs[name]
    registry = get_registry()
    return load_model(tinylm_spec, registry, CPU), load_model(hf_spec, registry, CPU)


@pytest.mark.parametrize("name", ["tied", "untied", "smollm3"])
def test_same_weights_same_logprobs_and_same_samples(pairs, name):
    ref, hf = load_both(pairs, name)
    assert (ref.info.backend, hf.info.backend) == ("tinylm", "hf")
    no_positions = ref.model.pos_emb.weight.numel() if name == "smollm3" else 0  # NoPE has no position table
    assert hf.info.revision == COMMIT and hf.info.parameters == ref.info.parameters - no_positions
    assert hf.info.context_length == ref.info.context_length and hf.info.vocab_size == ref.info.vocab_size
    assert hf.eos_id == ref.eos_id
    for prompt in PROMPTS:
        ids = ref.encode(prompt)
        assert hf.encode(prompt) == ids  # same tokenizer, same BOS
        assert hf.score(ids) == pytest.approx(ref.score(ids), abs=1e-5)
        for seed in (0, 1):
            params = SamplingParams(temperature=0.8, top_k=50, max_new_tokens=40)
            a = ref.generate(ids, params, torch.Generator().manual_seed(seed))
            b = hf.generate(ids, params, torch.Generator().manual_seed(seed))
            assert b.tokens == a.tokens and (b.eos_hit, b.stop_reason) == (a.eos_hit, a.stop_reason)
            assert b.logprobs == pytest.approx(a.logprobs, abs=1e-5)
            assert hf.score(ids + b.tokens) == pytest.approx(ref.score(ids + a.tokens), abs=1e-5)


def test_each_backend_logprobs_equal_its_own_direct_forward(pairs):
    ref, hf = load_both(pairs, "tied")
    ids = ref.encode("Once upon a time")
    params = SamplingParams(temperature=1.0, top_k=None, max_new_tokens=30)
    for model, forward in ((ref, lambda x: ref.model(x)), (hf, lambda x: hf.model(x).logits)):
        gen = model.generate(ids, params, torch.Generator().manual_seed(5))
        full = torch.tensor([ids + gen.tokens])
        with torch.no_grad():
            logprobs = torch.log_softmax(forward(full)[0].float(), dim=-1)
        expected = [float(logprobs[len(ids) - 1 + i, t]) for i, t in enumerate(gen.tokens)]
        assert gen.logprobs == pytest.approx(expected, abs=1e-5)


def test_exported_model_also_works_with_plain_transformers_generate(pairs):
    _, hf = load_both(pairs, "tied")
    ids = torch.tensor([hf.encode("Once upon a time")])
    out = hf.model.generate(ids, max_new_tokens=8, do_sample=False, pad_token_id=0)
    assert out.shape[1] <= ids.shape[1] + 8 and torch.equal(out[0, : ids.shape[1]], ids[0])


def test_too_long_for_learned_positions(pairs):
    _, hf = load_both(pairs, "tied")
    with pytest.raises(UserError, match="context holds"):
        hf.generate(list(range(4, 4 + hf.info.context_length)), SamplingParams(), torch.Generator())


def test_suite_run_over_both_backends_with_an_hf_judge(pairs, tmp_path):
    """The CLI end to end: a tinylm checkpoint and its hf export in one run, judged by another hf model."""
    from harness.records import load_run

    tinylm_spec, tied = pairs["tied"]
    models = [tinylm_spec, tied]  # the judge (untied export) is a third hf model
    suite = tmp_path / "s.yaml"
    suite.write_text(
        "name: hfmix\nsamples_per_prompt: 2\nwarmup: 1\ndevice: cpu\n"
        f"judge: {pairs['untied'][1]}\n"
        "sampling: {temperature: 0.8, top_k: 50, max_new_tokens: 24, seed: 7}\nprompts:\n"
        + "".join(f"  - {{id: p{i}, category: c, text: {json.dumps(t)}}}\n" for i, t in enumerate(PROMPTS[:2]))
    )
    result = harness(
        "run",
        suite,
        "--models",
        ",".join(models),
        "--out",
        tmp_path / "run",
        "--no-report",
        "--no-progress",
        env={"HF_HOME": pairs["home"][0]},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    run = load_run(tmp_path / "run")
    by_model: dict[str, dict] = {}
    for record in run.samples:
        by_model.setdefault(record["model"], {})[(record["prompt_id"], record["sample_index"])] = record
    assert set(by_model) == set(models) and all(len(v) == 4 for v in by_model.values())
    for key, record in by_model[tinylm_spec].items():  # same weights, same seeds: same tokens and metrics
        twin = by_model[tied][key]
        assert twin["output_ids"] == record["output_ids"]
        for metric in ("perplexity", "avg_token_prob", "repetition_rate", "judge_bpb"):
            a, b = record["metrics"].get(metric), twin["metrics"].get(metric)
            assert (a is None and b is None) or a == pytest.approx(b, rel=1e-4), metric
    assert any(r["metrics"].get("judge_bpb") for r in by_model[tied].values())
    infos = {m.info["spec"]: m.info for m in run.manifest.models}
    assert infos[tied]["revision"] == COMMIT and infos[tied]["backend"] == "hf"


def test_export_tokenizer_loads_in_plain_transformers_without_a_prompt(pairs, tiny_tokenizer, tmp_path):
    """The default export carries no auto_map: ``AutoTokenizer`` loads it with no question asked (stdin is
    a closed pipe here, so a prompt would print its question) and tokenizes as the tinylm tokenizer does."""
    snapshot = Path(pairs["home"][0]) / "hub" / f"models--{ORG}--tinylm-untied" / "snapshots" / COMMIT
    assert (snapshot / "config.json").is_file() and not (snapshot / MODELING_FILE).exists()
    code = (
        "from transformers import AutoTokenizer\n"
        f"t = AutoTokenizer.from_pretrained({str(snapshot)!r}, local_files_only=True)\n"
        "print(t('Once upon a time').input_ids)\n"
    )
    env = {**os.environ, "HF_HOME": str(tmp_path / "home"), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        timeout=HANG_S,
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr
    assert "custom code" not in result.stdout + result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == tiny_tokenizer.encode("Once upon a time").ids


def test_export_loads_in_plain_transformers_with_remote_code(pairs, tmp_path):
    """Outside the harness (no in-process registration) the export's own modeling file is used."""
    ref, hf = load_both(pairs, "tied")
    ids = ref.encode("Once upon a time")
    snapshot = hf.info.extra["snapshot"]
    code = (
        "import json, sys, torch\nfrom transformers import AutoModelForCausalLM\n"
        f"m = AutoModelForCausalLM.from_pretrained({snapshot!r}, trust_remote_code=True, local_files_only=True)\n"
        f"x = torch.tensor([{ids!r}])\n"
        "lp = torch.log_softmax(m(x[:, :-1]).logits[0].float(), -1)\n"
        "print(type(m).__module__); print(json.dumps((-lp.gather(1, x[0, 1:, None])[:, 0]).tolist()))\n"
    )
    env = {**os.environ, "HF_HOME": str(tmp_path / "home"), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=HANG_S, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    module, nll = result.stdout.strip().splitlines()[-2:]
    assert module.startswith("transformers_modules.") and module.endswith("modeling_tinylm_ref")
    assert json.loads(nll) == pytest.approx(ref.score(ids), abs=1e-5)
