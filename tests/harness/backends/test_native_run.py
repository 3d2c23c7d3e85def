"""One ``harness run`` over four runtimes: tinylm, its ONNX export, a GGUF Llama and the same Llama under hf.

The CLI end to end, as a user would type it: one command, one run directory, one report. Pairs over the
same weights sample the same tokens for the same seeds, so their quality metrics agree too.
"""

from __future__ import annotations

import json

import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")
pytest.importorskip("llama_cpp")
pytest.importorskip("gguf")
pytest.importorskip("transformers")

from tests.harness.backends.tiny_llama import build_tiny_llama  # noqa: E402
from tests.harness.test_runner import harness  # noqa: E402

PROMPTS = ["Once upon a time", "Lily was a curious girl who loved"]


def test_one_run_over_tinylm_onnx_gguf_and_hf_writes_one_report(tmp_path, tiny_checkpoint, tiny_tokenizer):
    from harness.records import load_run
    from tinylm_ref.checkpoint import load_checkpoint
    from tinylm_ref.onnx_export import export_onnx

    ckpt = load_checkpoint(tiny_checkpoint)
    export_onnx(ckpt.model, ckpt.tokenizer, tmp_path / "onnx")
    llama = build_tiny_llama(tiny_tokenizer, tmp_path / "llama")
    models = [f"tinylm:{tiny_checkpoint}", f"onnx:{tmp_path / 'onnx'}", f"gguf:{llama['F32']}", f"hf:{llama['hf']}"]
    suite = tmp_path / "s.yaml"
    suite.write_text(
        "name: runtimes\nsamples_per_prompt: 2\nwarmup: 1\ndevice: cpu\n"
        "sampling: {temperature: 0.8, top_k: 50, max_new_tokens: 20, seed: 11}\nprompts:\n"
        + "".join(f"  - {{id: p{i}, category: c, text: {json.dumps(t)}}}\n" for i, t in enumerate(PROMPTS))
    )
    result = harness(
        "run", suite, "--models", ",".join(models), "--out", tmp_path / "run", "--threads", "1", "--no-progress"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    run = load_run(tmp_path / "run")
    assert len(list((tmp_path / "run").glob("*.html"))) == 1
    by_model: dict[str, dict] = {}
    for record in run.samples:
        by_model.setdefault(record["model"], {})[(record["prompt_id"], record["sample_index"])] = record
    assert set(by_model) == set(models) and all(len(v) == 4 for v in by_model.values())
    for a, b in ((models[0], models[1]), (models[3], models[2])):  # same weights: same tokens, same metrics
        for key, record in by_model[a].items():
            twin = by_model[b][key]
            assert twin["output_ids"] == record["output_ids"]
            assert twin["metrics"]["perplexity"] == pytest.approx(record["metrics"]["perplexity"], rel=1e-3)
    infos = {m.info["spec"]: m.info for m in run.manifest.models}
    assert [infos[s]["backend"] for s in models] == ["tinylm", "onnx", "gguf", "hf"]
    assert infos[models[2]]["extra"]["kv_cache_type"] == "f32" and infos[models[2]]["extra"]["n_threads"] == 1
    assert infos[models[1]]["extra"]["runtime"] == "onnxruntime"
