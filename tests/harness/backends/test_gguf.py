"""The ``gguf`` backend (llama.cpp) against the same weights under ``hf:``, and its refusals of bad files.

A tiny Llama with random weights is written to GGUF F32 with the ``gguf`` package and loaded by llama.cpp;
the same model is saved with ``save_pretrained`` and loaded by the ``hf`` backend. With llama.cpp's KV
cache in float32 (the backend's default) per-token log-probs agree within ``TOLERANCE`` and greedy and
seeded samples give the same tokens; llama.cpp's default f16 cache is measurably further off.
"""

from __future__ import annotations

import shutil
import socket

import pytest
import torch

pytest.importorskip("llama_cpp")
pytest.importorskip("gguf")
pytest.importorskip("transformers")

from harness.errors import UserError  # noqa: E402
from harness.types import LoadOptions, SamplingParams  # noqa: E402
from tests.harness.backends.hub_cache import put_in_hub_cache  # noqa: E402
from tests.harness.backends.tiny_llama import build_tiny_llama  # noqa: E402

ORG = "tiny-org"
COMMIT = "e" * 40
CPU = LoadOptions(device="cpu")
PROMPTS = ["Once upon a time", "Lily was a curious girl who loved", '"Look at that!" said Tom.']
#: nats per token between llama.cpp (f32 weights, f32 KV cache) and transformers in float32: different
#: kernels sum in different orders; observed differences are ~1e-5 (see docs/backends.md)
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def llama(tmp_path_factory, tiny_tokenizer):
    root = tmp_path_factory.mktemp("tiny_llama")
    paths = build_tiny_llama(tiny_tokenizer, root, qtypes=("F32", "Q8_0"))
    repo = root / "repo"
    repo.mkdir()
    shutil.copy(paths["F32"], repo / "model-f32.gguf")
    put_in_hub_cache(root / "home" / "hub", f"{ORG}/tiny-llama-gguf", repo, COMMIT)
    put_in_hub_cache(root / "home" / "hub", f"{ORG}/tiny-llama", paths["hf"], COMMIT)
    paths["home"] = root / "home"
    return paths


@pytest.fixture
def offline(monkeypatch, llama):
    monkeypatch.setenv("HF_HOME", str(llama["home"]))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def no_network(*args, **kwargs):
        raise AssertionError(f"a test tried to open a network connection: {args}")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)


def load(spec, **extra):
    from harness.models import load_model
    from harness.plugins import get_registry

    options = LoadOptions(device="cpu", threads=extra.pop("threads", None), extra=extra)
    return load_model(spec, get_registry(), options)


@pytest.mark.parametrize("where", ["path", "hub"])
def test_same_logprobs_and_tokens_as_the_same_weights_under_hf(llama, offline, where):
    spec = f"gguf:{ORG}/tiny-llama-gguf/model-f32.gguf" if where == "hub" else f"gguf:{llama['F32']}"
    hf, model = load(f"hf:{ORG}/tiny-llama"), load(spec)
    assert model.info.backend == "gguf" and model.info.extra["kv_cache_type"] == "f32"
    assert model.info.dtype == "F32" and model.info.extra["architecture"] == "llama"
    assert model.info.revision == (COMMIT if where == "hub" else None)
    assert model.info.parameters == hf.info.parameters and model.info.vocab_size == hf.info.vocab_size
    assert model.info.context_length == hf.info.context_length and model.eos_id == hf.eos_id
    for prompt in PROMPTS:
        ids = hf.encode(prompt)
        assert model.encode(prompt) == ids  # llama.cpp's BPE from the GGUF vocabulary = the tokenizer.json
        assert model.score(ids) == pytest.approx(hf.score(ids), abs=TOLERANCE)
        greedy = SamplingParams(temperature=0.0, top_k=None, max_new_tokens=30)
        a = hf.generate(ids, greedy, torch.Generator().manual_seed(0))
        b = model.generate(ids, greedy, torch.Generator().manual_seed(0))
        assert b.tokens == a.tokens and b.stop_reason == a.stop_reason
        assert b.logprobs == pytest.approx(a.logprobs, abs=TOLERANCE)
        for seed in (1, 2):
            params = SamplingParams(temperature=0.8, top_k=50, max_new_tokens=30)
            a = hf.generate(ids, params, torch.Generator().manual_seed(seed))
            b = model.generate(ids, params, torch.Generator().manual_seed(seed))
            assert b.tokens == a.tokens and b.logprobs == pytest.approx(a.logprobs, abs=TOLERANCE)
            assert model.decode(b.tokens) == hf.decode(a.tokens)


def test_the_f16_kv_cache_moves_logprobs_more_than_f32(llama, offline):
    hf = load(f"hf:{ORG}/tiny-llama")
    f32, f16 = load(f"gguf:{llama['F32']}"), load(f"gguf:{llama['F32']}", kv_cache="f16")
    assert f16.info.extra["kv_cache_type"] == "f16"
    ids = hf.encode(PROMPTS[1] + " " + PROMPTS[0])
    ref = torch.tensor(hf.score(ids))
    err32 = (torch.tensor(f32.score(ids)) - ref).abs().max().item()
    err16 = (torch.tensor(f16.score(ids)) - ref).abs().max().item()
    assert err32 < err16


def test_q8_0_is_labelled_by_what_it_holds_and_stays_close(llama):
    model = load(f"gguf:{llama['Q8_0']}")
    types = model.info.extra["tensor_types"]
    assert set(types) == {"F32", "Q8_0"} and types["Q8_0"] == 2 * 7 + 2  # 7 matrices per layer, embedding, head
    assert "Q8_0" in model.info.dtype and "F32" in model.info.dtype
    ids = model.encode(PROMPTS[0])
    out = model.generate(ids, SamplingParams(max_new_tokens=10), torch.Generator().manual_seed(0))
    assert out.tokens and all(lp <= 0 for lp in out.logprobs)


def test_threads_come_from_the_options(llama):
    assert load(f"gguf:{llama['F32']}", threads=1).info.extra["n_threads"] == 1


def test_a_crash_in_batched_prefill_falls_back_to_token_by_token(llama, monkeypatch):
    """The probe child really dies of SIGILL (fault injection, as on the AMX machine); the run goes on."""
    monkeypatch.setenv("HARNESS_GGUF_PROBE_FAULT", "batched")
    model = load(f"gguf:{llama['F32']}")
    assert model.info.extra["prefill_batch"] == 1 and "SIGILL" in model.info.extra["prefill"]
    reference = load(f"gguf:{llama['F32']}", probe="false")
    ids = model.encode(PROMPTS[1])
    assert model.score(ids) == pytest.approx(reference.score(ids), abs=TOLERANCE)


def test_a_crash_even_token_by_token_is_one_line(llama, monkeypatch):
    monkeypatch.setenv("HARNESS_GGUF_PROBE_FAULT", "always")
    with pytest.raises(UserError, match="crashes on .* on this CPU .*SIGILL") as info:
        load(f"gguf:{llama['F32']}")
    assert "\n" not in str(info.value)


def test_a_truncated_file_is_one_line_naming_it(llama, tmp_path):
    cut = tmp_path / "cut.gguf"
    data = llama["F32"].read_bytes()
    cut.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(UserError, match=r"cut\.gguf is (truncated|a damaged or truncated GGUF file)"):
        load(f"gguf:{cut}")


def test_not_a_gguf_file(tmp_path):
    other = tmp_path / "weights.gguf"
    other.write_bytes(b"PK\x03\x04" + bytes(100))
    with pytest.raises(UserError, match=r"weights\.gguf is not a GGUF file"):
        load(f"gguf:{other}")


def test_an_unsupported_architecture_is_refused(tmp_path):
    import gguf
    import numpy as np

    path = tmp_path / "odd.gguf"
    writer = gguf.GGUFWriter(str(path), "notanarch")
    writer.add_tensor("w", np.zeros((4, 4), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(UserError, match="architecture 'notanarch', which llama.cpp does not support"):
        load(f"gguf:{path}")


def test_spec_syntax_and_missing_hub_file(llama, offline):
    with pytest.raises(UserError, match="ORG/NAME/FILE.gguf"):
        load("gguf:tiny-org/no-file-given")
    with pytest.raises(UserError, match="has no file 'other.gguf'"):
        load(f"gguf:{ORG}/tiny-llama-gguf/other.gguf")
    with pytest.raises(UserError, match="kv_cache"):
        load(f"gguf:{llama['F32']}", kv_cache="q4")


def test_a_file_llama_cpp_cannot_load_is_one_line_with_its_reason(tmp_path):
    """A known architecture whose tensors are missing: the probe child fails, its reason comes back."""
    import gguf
    import numpy as np

    path = tmp_path / "hollow.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_block_count(1)
    writer.add_tensor("w", np.zeros((4, 4), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(UserError, match=r"cannot run .*hollow\.gguf: ") as info:
        load(f"gguf:{path}")
    assert "\n" not in str(info.value)
