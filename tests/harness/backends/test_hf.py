"""The ``hf`` backend on tiny random transformers models in a temporary Hub cache, fully offline.

Each model is written with ``save_pretrained`` into ``HF_HOME/hub/models--org--name`` exactly as
huggingface_hub lays it out (content-addressed blobs, snapshot symlinks, ``refs/main``), and loaded
through the spec a user types (``hf:org/name``), so the code path is the one a real Hub id takes.
Sockets are disabled for every test here: nothing may reach the network.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import socket
from pathlib import Path

import pytest
import torch

from harness.backends.hf import HFBackend, HFModel
from harness.errors import UserError
from harness.types import LoadOptions, Model, SamplingParams
from tests.harness.backends.hub_cache import put_in_hub_cache
from tests.harness.test_runner import harness

ORG = "tiny-org"
COMMIT_A, COMMIT_B = "a" * 40, "b" * 40
CPU = LoadOptions(device="cpu")


def hf_tokenizer(tokenizer, **special):
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, **special)


@pytest.fixture(scope="session")
def bare_tokenizer(tiny_tokenizer):
    """The session tokenizer without its ``<bos>`` template, as GPT-2-family tokenizers behave."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_str(tiny_tokenizer.to_str())
    tok.post_processor = None
    return tok


@pytest.fixture(scope="session")
def hub(tmp_path_factory, tiny_tokenizer, bare_tokenizer) -> Path:
    """HF_HOME with three architectures (Llama twice, at two commits), built once per session."""
    from transformers import AutoModelForCausalLM, GPT2Config, GPTNeoConfig, LlamaConfig

    home = tmp_path_factory.mktemp("hf_home")
    build = tmp_path_factory.mktemp("hf_build")
    vocab = tiny_tokenizer.get_vocab_size()
    ids = {t: tiny_tokenizer.token_to_id(t) for t in ("<pad>", "<eos>", "<bos>", "<unk>")}
    llama_tok = hf_tokenizer(tiny_tokenizer, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>", unk_token="<unk>")
    # GPT-2 convention: one token is BOS, EOS and pad at once, and the tokenizer adds nothing.
    gpt2_tok = hf_tokenizer(bare_tokenizer, bos_token="<eos>", eos_token="<eos>", pad_token="<eos>", unk_token="<unk>")
    noeos_tok = hf_tokenizer(bare_tokenizer, unk_token="<unk>")  # no BOS, no EOS, no pad
    specs = {
        "llama": (
            LlamaConfig(
                vocab_size=vocab,
                hidden_size=32,
                intermediate_size=64,
                num_hidden_layers=2,
                num_attention_heads=4,
                num_key_value_heads=2,
                max_position_embeddings=96,
                bos_token_id=ids["<bos>"],
                eos_token_id=ids["<eos>"],
                pad_token_id=ids["<pad>"],
            ),
            llama_tok,
        ),
        "gpt2": (
            GPT2Config(
                vocab_size=vocab,
                n_embd=32,
                n_layer=2,
                n_head=4,
                n_positions=80,
                bos_token_id=ids["<eos>"],
                eos_token_id=ids["<eos>"],
                pad_token_id=ids["<eos>"],
            ),
            gpt2_tok,
        ),
        "gpt-neo": (
            GPTNeoConfig(
                vocab_size=vocab,
                hidden_size=32,
                num_layers=2,
                num_heads=4,
                max_position_embeddings=64,
                attention_types=[[["global", "local"], 1]],
                window_size=8,
                bos_token_id=None,
                eos_token_id=None,
                pad_token_id=None,
            ),
            noeos_tok,
        ),
    }
    for name, (config, tok) in specs.items():
        for commit, seed in ((COMMIT_A, 0), (COMMIT_B, 1)) if name == "llama" else ((COMMIT_A, 0),):
            torch.manual_seed(seed)
            model = AutoModelForCausalLM.from_config(config)
            if name == "gpt-neo":
                model.generation_config.eos_token_id = model.generation_config.bos_token_id = None
            src = build / f"{name}-{commit[:1]}"
            model.save_pretrained(src)
            tok.save_pretrained(src)
            refs = ("main",) if commit == COMMIT_A else ("v0",)
            put_in_hub_cache(home / "hub", f"{ORG}/{name}", src, commit, refs)
    # A repository that asks for its own Python code, and a partial download without weights.
    custom = build / "custom"
    custom.mkdir()
    (custom / "config.json").write_text(
        json.dumps(
            {
                "model_type": "my_custom_lm",
                "auto_map": {
                    "AutoConfig": "modeling_custom.CustomConfig",
                    "AutoModelForCausalLM": "modeling_custom.CustomLM",
                },
            }
        )
    )
    put_in_hub_cache(home / "hub", f"{ORG}/custom-code", custom, COMMIT_A)
    partial = build / "partial"
    shutil.copytree(build / "llama-a", partial, ignore=shutil.ignore_patterns("*.safetensors"))
    put_in_hub_cache(home / "hub", f"{ORG}/partial", partial, COMMIT_A)
    return home


@pytest.fixture(autouse=True)
def offline(monkeypatch, hub):
    """Every test: the temporary HF_HOME, HF_HUB_OFFLINE=1, and no sockets at all."""
    monkeypatch.setenv("HF_HOME", str(hub))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def no_network(*args, **kwargs):
        raise AssertionError(f"a test tried to open a network connection: {args}")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)


_LOADED: dict[str, HFModel] = {}


def load(spec: str, **options) -> HFModel:
    """Load through the registry, as the runner does; cached per spec for speed."""
    from harness.models import load_model
    from harness.plugins import get_registry

    key = f"{spec}|{sorted(options.items())}"
    if key not in _LOADED:
        _LOADED[key] = load_model(spec, get_registry(), LoadOptions(device="cpu", **options))
    return _LOADED[key]


ARCHS = ["llama", "gpt2", "gpt-neo"]


@pytest.mark.parametrize("arch", ARCHS)
def test_hub_id_loads_offline_with_the_resolved_commit_recorded(arch, hub):
    model = load(f"hf:{ORG}/{arch}")
    assert isinstance(model, Model) and isinstance(model, HFModel)
    info = model.info
    assert (info.backend, info.source, info.revision) == ("hf", f"{ORG}/{arch}", COMMIT_A)
    weights = hub / "hub" / f"models--{ORG}--{arch}" / "snapshots" / COMMIT_A / "model.safetensors"
    assert info.weights_sha256 == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert info.parameters == sum(p.numel() for p in model.model.parameters())
    assert info.vocab_size == 320 and info.context_length == {"llama": 96, "gpt2": 80, "gpt-neo": 64}[arch]
    assert info.dtype == "float32" and info.device == "cpu" and info.tokenizer_sha256
    assert info.extra["architectures"] == [
        {"llama": "LlamaForCausalLM", "gpt2": "GPT2LMHeadModel", "gpt-neo": "GPTNeoForCausalLM"}[arch]
    ]
    assert info.extra["kv_cache"] is True
    json.dumps(info.to_dict())  # goes into the manifest as is


def test_revision_pinning_by_commit_and_by_tag():
    main, pinned, tagged = load(f"hf:{ORG}/llama"), load(f"hf:{ORG}/llama@{COMMIT_B}"), load(f"hf:{ORG}/llama@v0")
    assert (main.info.revision, pinned.info.revision, tagged.info.revision) == (COMMIT_A, COMMIT_B, COMMIT_B)
    assert pinned.info.weights_sha256 == tagged.info.weights_sha256 != main.info.weights_sha256
    ids = main.encode("Once upon a time")
    assert main.score(ids) != pinned.score(ids)


@pytest.mark.parametrize("arch", ARCHS)
def test_seeded_sampling_repeats_exactly(arch):
    model = load(f"hf:{ORG}/{arch}")
    prompt = model.encode("Once upon a time, a little dog")
    params = SamplingParams(temperature=0.8, top_k=50, max_new_tokens=30, seed=0)
    first = model.generate(prompt, params, torch.Generator().manual_seed(42))
    second = model.generate(prompt, params, torch.Generator().manual_seed(42))
    other = model.generate(prompt, params, torch.Generator().manual_seed(43))
    assert first.tokens and first.tokens == second.tokens and first.logprobs == second.logprobs
    assert other.tokens != first.tokens


@pytest.mark.parametrize("arch", ARCHS)
def test_logprobs_and_score_equal_a_direct_forward(arch):
    """The KV-cache loop reports log p under the raw distribution: what one full forward pass gives."""
    model = load(f"hf:{ORG}/{arch}")
    prompt = model.encode("The cat sat on the mat.")
    gen = model.generate(
        prompt, SamplingParams(temperature=1.3, top_k=None, max_new_tokens=25), torch.Generator().manual_seed(1)
    )
    ids = prompt + gen.tokens
    with torch.no_grad():
        direct = torch.log_softmax(model.model(torch.tensor([ids])).logits[0].float(), dim=-1)
    expected = [float(direct[len(prompt) - 1 + i, t]) for i, t in enumerate(gen.tokens)]
    assert gen.logprobs == pytest.approx(expected, abs=1e-5)
    nll = model.score(ids)
    assert len(nll) == len(ids) - 1
    assert nll == pytest.approx([-float(direct[i, ids[i + 1]]) for i in range(len(ids) - 1)], abs=1e-5)
    assert model.score(ids[:1]) == [] and model.score([]) == []


def test_timing_contract():
    model = load(f"hf:{ORG}/gpt-neo")
    gen = model.generate(model.encode("Tom ran"), SamplingParams(max_new_tokens=12), torch.Generator().manual_seed(0))
    times = gen.token_times_ns
    assert len(times) == len(gen.tokens) == len(gen.logprobs) == 12
    assert gen.start_ns < gen.first_token_ns == times[0] and times == sorted(times) and gen.end_ns == times[-1]


def test_eos_ends_generation_and_is_not_counted():
    model = load(f"hf:{ORG}/llama")
    assert model.eos_id == 1 and model.stop_ids == {1}  # "<eos>" from tokenizer and config
    prompt = model.encode("Once upon a time")
    assert prompt[0] == 2  # the tokenizer's template adds <bos>
    params = SamplingParams(temperature=1.0, top_k=None, max_new_tokens=20)
    saved = model.eos_id, model.stop_ids
    try:
        model.eos_id, model.stop_ids = None, frozenset()
        free = model.generate(prompt, params, torch.Generator().manual_seed(0))
        stop_at = free.tokens[3]  # pretend that token is EOS: same seed, so the run stops at its first use
        cut = free.tokens.index(stop_at)
        model.eos_id, model.stop_ids = stop_at, frozenset({stop_at})
        gen = model.generate(prompt, params, torch.Generator().manual_seed(0))
        assert gen.tokens == free.tokens[:cut] and stop_at not in gen.tokens
        assert gen.eos_hit and gen.stop_reason == "eos" and len(gen.logprobs) == cut
        assert gen.end_ns > (gen.token_times_ns[-1] if gen.token_times_ns else gen.start_ns)
        model.eos_id, model.stop_ids = free.tokens[0], frozenset({free.tokens[0]})  # EOS first: n = 0
        empty = model.generate(prompt, params, torch.Generator().manual_seed(0))
        assert empty.tokens == [] and empty.eos_hit and empty.first_token_ns == empty.end_ns
    finally:
        model.eos_id, model.stop_ids = saved


def test_pad_equal_to_eos_and_bos_prepended_for_gpt2_style_tokenizers():
    model = load(f"hf:{ORG}/gpt2")
    eos = model.tokenizer.convert_tokens_to_ids("<eos>")
    assert model.eos_id == eos == model.tokenizer.pad_token_id == model.bos_id
    ids = model.encode("Once upon a time")
    assert ids[0] == eos and ids[1:] == model.tokenizer("Once upon a time")["input_ids"]
    assert model.decode(ids) == "Once upon a time"  # special tokens dropped
    assert load(f"hf:{ORG}/gpt2", extra={"add_bos": False}).encode("Once upon a time") == ids[1:]


def test_model_without_eos_runs_to_the_limit_and_stops_at_the_context():
    model = load(f"hf:{ORG}/gpt-neo")
    assert model.eos_id is None and model.stop_ids == frozenset() and model.bos_id is None
    prompt = model.encode("Once upon a time")
    gen = model.generate(prompt, SamplingParams(max_new_tokens=20), torch.Generator().manual_seed(0))
    assert len(gen.tokens) == 20 and gen.stop_reason == "max_new_tokens" and not gen.eos_hit
    long = model.generate(prompt, SamplingParams(max_new_tokens=200), torch.Generator().manual_seed(0))
    assert len(long.tokens) == 64 - len(prompt) and long.stop_reason == "context"
    with pytest.raises(UserError, match="context holds 64"):
        model.generate(list(range(5, 69)), SamplingParams(), torch.Generator())


def test_bfloat16_and_bad_dtype_or_device():
    model = load(f"hf:{ORG}/llama", dtype="bfloat16")
    assert model.info.dtype == "bfloat16"
    gen = model.generate(model.encode("Hi"), SamplingParams(max_new_tokens=5), torch.Generator().manual_seed(0))
    assert all(isinstance(x, float) and x <= 0 for x in gen.logprobs)
    with pytest.raises(UserError, match="--dtype 'int3'"):
        HFBackend().load(f"hf:{ORG}/llama", LoadOptions(device="cpu", dtype="int3"))
    with pytest.raises(UserError, match="device"):
        HFBackend().load(f"hf:{ORG}/llama", LoadOptions(device="tpu"))


def one_line_error(spec: str, options: LoadOptions = CPU) -> str:
    with pytest.raises(UserError) as info:
        HFBackend().load(spec, options)
    message = str(info.value)
    assert "\n" not in message and spec in message
    return message


def test_offline_and_not_cached_is_one_line_naming_the_model_and_the_fix():
    message = one_line_error(f"hf:{ORG}/not-downloaded")
    assert "HF_HUB_OFFLINE" in message and f"hf download {ORG}/not-downloaded" in message
    unknown_ref = one_line_error(f"hf:{ORG}/llama@nope")  # offline, a ref the cache has never seen
    assert f"{ORG}/llama@nope is not in the Hugging Face cache" in unknown_ref
    assert "no weights" in one_line_error(f"hf:{ORG}/partial")


def test_remote_code_needs_the_explicit_flag():
    message = one_line_error(f"hf:{ORG}/custom-code")
    assert "--trust-remote-code" in message and "my_custom_lm" in message


def test_local_directory_spec_and_claims(hub, tmp_path, tiny_checkpoint):
    snapshot = hub / "hub" / f"models--{ORG}--gpt2" / "snapshots" / COMMIT_A
    local = tmp_path / "gpt2"
    shutil.copytree(snapshot, local)  # resolves the symlinks: a plain directory
    model = HFBackend().load(f"hf:{local}", CPU)
    assert model.info.revision is None and model.info.source == str(local.resolve())
    assert model.info.weights_sha256 == hashlib.sha256((local / "model.safetensors").read_bytes()).hexdigest()
    assert model.info.weights_sha256 == load(f"hf:{ORG}/gpt2").info.weights_sha256
    backend = HFBackend()
    assert backend.claims(str(local)) and not backend.claims(str(tiny_checkpoint)) and not backend.claims("10m")
    assert "does not exist" in one_line_error(f"hf:{tmp_path}/missing")


def test_available_lists_cached_repositories():
    specs = [spec for spec, _ in HFBackend().available()]
    assert f"hf:{ORG}/llama" in specs and f"hf:{ORG}/gpt-neo" in specs and "hf:ORG/NAME[@REVISION]" in specs


def test_score_serves_judge_bpb_windowing():
    """judge_bpb calls encode + score over windows no longer than the context; the result is exact."""
    from harness.metrics._windowed_nll import texts_bits_per_byte

    judge = load(f"hf:{ORG}/gpt2")
    short = "The dog barked."
    ids = judge.encode(short)
    expected = sum(judge.score(ids)) / (math.log(2) * len(short.encode()))
    assert texts_bits_per_byte([short], judge.encode, judge.score, judge.info.context_length) == pytest.approx(expected)
    long_text = " ".join(["Lily and Tom played in the park with a red ball."] * 20)
    assert len(judge.encode(long_text)) > judge.info.context_length
    bpb = texts_bits_per_byte([long_text], judge.encode, judge.score, judge.info.context_length)
    assert bpb is not None and 0 < bpb < 20
    with pytest.raises(ValueError, match="holds 80"):
        judge.score(judge.encode(long_text))


def test_suite_run_over_three_architectures_and_a_reference_model(hub, tmp_path, tiny_checkpoint):
    """The CLI end to end, offline: Llama, GPT-2 and GPT-Neo from the Hub cache beside a tinylm checkpoint."""

    from harness.records import load_run

    models = [f"hf:{ORG}/llama@v0", f"hf:{ORG}/gpt2", f"hf:{ORG}/gpt-neo", str(tiny_checkpoint)]
    suite = tmp_path / "s.yaml"
    suite.write_text(
        "name: hf3\nsamples_per_prompt: 2\nwarmup: 1\ndevice: cpu\n"
        "sampling: {temperature: 0.8, top_k: 50, max_new_tokens: 16, seed: 3}\nprompts:\n"
        '  - {id: a, category: c, text: "Once upon a time"}\n  - {id: b, category: c, text: "Tom saw a"}\n'
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
        env={"HF_HOME": str(hub)},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    run = load_run(tmp_path / "run")
    assert sorted({r["model"] for r in run.samples}) == sorted(models) and len(run.samples) == 4 * 2 * 2
    for record in run.samples:
        assert len(record["output_ids"]) == record["metrics"]["tokens_generated"] == len(record["token_times_ms"])
        if record["output_ids"]:
            assert record["metrics"]["perplexity"] >= 1
    infos = {m.info["spec"]: m.info for m in run.manifest.models}
    assert infos[f"hf:{ORG}/llama@v0"]["revision"] == COMMIT_B and infos[f"hf:{ORG}/gpt2"]["revision"] == COMMIT_A
    assert infos[str(tiny_checkpoint)]["backend"] == "tinylm"
