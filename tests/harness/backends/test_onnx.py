"""The ``onnx`` backend against the ``tinylm`` backend on the same weights, and its refusals of bad graphs.

A trained tiny checkpoint is exported with ``tinylm export onnx`` (the real CLI, the real TorchScript
exporter) and run by ONNX Runtime: per-token log-probs agree within 1e-4 and the same seeds sample the same
tokens, in both layouts (one graph; prefill + decode graphs), loaded from a path and from a Hub-cache layout.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys

import pytest
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from harness.errors import UserError  # noqa: E402
from harness.types import LoadOptions, SamplingParams  # noqa: E402
from tests.ceilings import HANG_S  # noqa: E402
from tests.harness.backends.hub_cache import put_in_hub_cache  # noqa: E402

ORG = "tiny-org"
COMMIT = "d" * 40
CPU = LoadOptions(device="cpu")
PROMPTS = ["Once upon a time", "Lily was a curious girl who loved", '"Look at that!" said Tom.']
TOLERANCE = 1e-4  # nats per token, the bound; observed differences are ~1e-5 (float32 summation order)


def tinylm_cli(*args):
    return subprocess.run(
        [sys.executable, "-c", "from tinylm_ref.cli import main; main()", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=HANG_S,
    )


@pytest.fixture(scope="module")
def exports(tmp_path_factory, tiny_checkpoint):
    root = tmp_path_factory.mktemp("onnx_exports")
    for name, extra in (("merged", []), ("split", ["--split"])):
        result = tinylm_cli("export", "onnx", tiny_checkpoint, "-o", root / name, *extra)
        assert result.returncode == 0, result.stderr
    home = root / "hf_home"
    put_in_hub_cache(home / "hub", f"{ORG}/tinylm-onnx", root / "merged", COMMIT)
    return root


@pytest.fixture
def offline(monkeypatch, exports):
    monkeypatch.setenv("HF_HOME", str(exports / "hf_home"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def no_network(*args, **kwargs):
        raise AssertionError(f"a test tried to open a network connection: {args}")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)


def load(spec):
    from harness.models import load_model
    from harness.plugins import get_registry

    return load_model(spec, get_registry(), CPU)


def test_export_writes_the_optimum_layout(exports):
    assert sorted(p.name for p in (exports / "merged").iterdir()) == ["config.json", "model.onnx", "tokenizer.json"]
    assert {"decoder_model.onnx", "decoder_with_past_model.onnx"} <= {p.name for p in (exports / "split").iterdir()}


@pytest.mark.parametrize("layout", ["merged", "split", "hub"])
def test_same_logprobs_and_same_samples_as_the_tinylm_backend(exports, tiny_checkpoint, offline, layout):
    spec = f"onnx:{ORG}/tinylm-onnx" if layout == "hub" else f"onnx:{exports / layout}"
    ref, model = load(f"tinylm:{tiny_checkpoint}"), load(spec)
    assert model.info.backend == "onnx" and model.eos_id == ref.eos_id
    assert model.info.parameters == ref.info.parameters and model.info.context_length == ref.info.context_length
    assert model.info.revision == (COMMIT if layout == "hub" else None)
    assert model.info.extra["layout"].startswith("prefill + decode" if layout == "split" else "one graph")
    for prompt in PROMPTS:
        ids = ref.encode(prompt)
        assert model.encode(prompt) == ids
        assert model.score(ids) == pytest.approx(ref.score(ids), abs=TOLERANCE)
        for seed in (0, 1, 2):
            params = SamplingParams(temperature=0.8, top_k=50, max_new_tokens=40)
            a = ref.generate(ids, params, torch.Generator().manual_seed(seed))
            b = model.generate(ids, params, torch.Generator().manual_seed(seed))
            assert b.tokens == a.tokens and (b.eos_hit, b.stop_reason) == (a.eos_hit, a.stop_reason)
            assert b.logprobs == pytest.approx(a.logprobs, abs=TOLERANCE)
            assert len(b.token_times_ns) == len(b.tokens) and b.token_times_ns == sorted(b.token_times_ns)
            assert model.decode(b.tokens) == ref.decode(a.tokens)


def test_generation_runs_to_the_end_of_the_context(exports, tiny_checkpoint):
    model = load(f"onnx:{exports / 'merged'}")
    model.stop_ids = frozenset()  # never stop at EOS: the context bound must end it
    ids = model.encode("Once upon a time")
    out = model.generate(ids, SamplingParams(max_new_tokens=1000), torch.Generator().manual_seed(0))
    assert out.stop_reason == "context" and len(ids) + len(out.tokens) == model.info.context_length
    ref = load(f"tinylm:{tiny_checkpoint}")
    assert model.score(ids + out.tokens) == pytest.approx(ref.score(ids + out.tokens), abs=TOLERANCE)


def test_a_truncated_graph_is_one_line_naming_the_file(exports, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(exports / "merged", broken)
    graph = broken / "model.onnx"
    graph.write_bytes(graph.read_bytes()[: graph.stat().st_size // 2])
    with pytest.raises(UserError, match=r"model\.onnx is not a loadable ONNX graph") as info:
        load(f"onnx:{broken}")
    assert "\n" not in str(info.value) and str(graph) in str(info.value)


def test_a_graph_without_kv_cache_inputs_is_refused(exports, tmp_path):
    nocache = tmp_path / "nocache"
    nocache.mkdir()
    shutil.copy(exports / "split" / "decoder_model.onnx", nocache / "model.onnx")  # the prefill graph: no past
    for name in ("config.json", "tokenizer.json"):
        shutil.copy(exports / "merged" / name, nocache / name)
    with pytest.raises(UserError, match="has no KV-cache inputs"):
        load(f"onnx:{nocache}")


def test_a_graph_that_is_not_a_decoder_is_refused(exports, tmp_path):
    import onnx
    from onnx import TensorProto, helper

    other = tmp_path / "other"
    shutil.copytree(exports / "merged", other)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "classifier", [x], [y])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), other / "model.onnx")
    with pytest.raises(UserError, match="not a causal-LM decoder graph"):
        load(f"onnx:{other}")


def test_a_directory_without_a_graph_and_a_missing_path(tmp_path):
    with pytest.raises(UserError, match="no ONNX decoder graph"):
        load(f"onnx:{tmp_path}")
    with pytest.raises(UserError, match="does not exist"):
        load(f"onnx:{tmp_path / 'nope'}")


def test_export_refuses_a_non_empty_output_directory(exports):
    result = tinylm_cli("export", "onnx", "2.5m", "-o", exports / "merged")
    assert result.returncode == 2 and "not an empty directory" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
