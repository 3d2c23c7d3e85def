"""The ``openai`` backend against llama.cpp's own server (``python -m llama_cpp.server``), a second,
independent implementation of the API, serving a tiny GGUF model written here.

llama-cpp-python streams text (no token ids) and takes text prompts, so this covers the other path of the
client: prompts sent as text, outputs re-tokenized through the server's ``/extras/tokenize``. Greedy
decoding is checked against llama.cpp itself (``llama_cpp.Llama`` on the same file, in this process).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from harness.records import load_run
from tests.harness.serve.servers import free_port, running
from tests.harness.test_runner import harness

llama_cpp = pytest.importorskip("llama_cpp")
gguf = pytest.importorskip("gguf")
pytest.importorskip("llama_cpp.server.app")  # the [server] extra of llama-cpp-python
pytest.importorskip("httpx_sse")

DIM, HEADS, FFN, LAYERS, CONTEXT = 64, 4, 128, 2, 128


def ascii_vocab() -> list[str]:
    """One token per printable ASCII byte (space included), in GPT-2's byte-to-unicode spelling.

    Printable only, so every output is plain text: llama-cpp-python's stream drops characters split across
    byte tokens and control bytes, which would make the streamed text differ from the generation.
    """
    return ["Ġ" if b == 0x20 else chr(b) for b in range(0x20, 0x7F)]


def write_tiny_gguf(path: Path, seed: int = 0) -> Path:
    """A 2-layer Llama with random weights and a byte-level BPE vocabulary (95 bytes, 2 merges, BOS, EOS)."""
    tokens = [*ascii_vocab(), "Ġt", "he", "<bos>", "<eos>"]
    types = [int(gguf.TokenType.NORMAL)] * (len(tokens) - 2) + [int(gguf.TokenType.CONTROL)] * 2
    vocab = len(tokens)
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("harness-serve-test")
    writer.add_context_length(CONTEXT)
    writer.add_embedding_length(DIM)
    writer.add_block_count(LAYERS)
    writer.add_feed_forward_length(FFN)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(HEADS)
    writer.add_rope_dimension_count(DIM // HEADS)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(vocab)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("gpt-2")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(["Ġ t", "h e"])
    writer.add_bos_token_id(vocab - 2)
    writer.add_eos_token_id(vocab - 1)
    writer.add_add_bos_token(True)
    rng = np.random.default_rng(seed)

    def weights(*shape: int) -> np.ndarray:  # wide enough that greedy picks are not decided by noise
        return rng.normal(0.0, 0.15, size=shape).astype(np.float32)

    writer.add_tensor("token_embd.weight", weights(vocab, DIM))
    writer.add_tensor("output_norm.weight", np.ones(DIM, dtype=np.float32))
    writer.add_tensor("output.weight", weights(vocab, DIM) * 4)  # spread logits: greedy never near a tie
    for i in range(LAYERS):
        for name, shape in (
            ("attn_q", (DIM, DIM)),
            ("attn_k", (DIM, DIM)),
            ("attn_v", (DIM, DIM)),
            ("attn_output", (DIM, DIM)),
            ("ffn_gate", (FFN, DIM)),
            ("ffn_up", (FFN, DIM)),
            ("ffn_down", (DIM, FFN)),
        ):
            writer.add_tensor(f"blk.{i}.{name}.weight", weights(*shape))
        writer.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(DIM, dtype=np.float32))
        writer.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(DIM, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def suite(tmp_path: Path) -> Path:
    path = tmp_path / "llama.yaml"
    path.write_text(
        "name: llama\nsamples_per_prompt: 2\nwarmup: 0\ndevice: cpu\n"
        "sampling: {temperature: 0, top_k: null, max_new_tokens: 8, seed: 1}\nprompts:\n"
        '  - {id: a, text: "Once upon a time the"}\n  - {id: b, text: "the cat sat"}\n'
    )
    return path


def test_openai_backend_against_llama_cpp_server(tmp_path):
    model_file = write_tiny_gguf(tmp_path / "tiny.gguf")
    port = free_port()
    args = [
        "-m",
        "llama_cpp.server",
        "--model",
        str(model_file),
        "--model_alias",
        "tiny",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--n_ctx",
        str(CONTEXT),
        "--n_threads",
        "1",
        "--n_threads_batch",
        "1",
    ]
    out = tmp_path / "run"
    with running(args, port, ready_path="/v1/models"):
        result = harness(
            "run",
            suite(tmp_path),
            "--models",
            f"openai:http://127.0.0.1:{port}/v1#tiny",
            "--out",
            out,
            "--no-report",
            "--no-progress",
        )
    assert result.returncode == 0, result.stderr
    run = load_run(out)
    extra = run.manifest.models[0].info["extra"]
    assert extra["tokenizer"] == "server /extras/tokenize" and extra["prompt_sent_as"] == "text"
    assert extra["token_ids"] == "re-tokenized text"
    local = llama_cpp.Llama(
        model_path=str(model_file), n_ctx=CONTEXT, n_threads=1, n_threads_batch=1, logits_all=True, verbose=False
    )
    by_key = {(r["prompt_id"], r["sample_index"]): r for r in run.samples}
    assert len(by_key) == 4
    for (prompt_id, _), record in by_key.items():
        # the server's request as llama.cpp takes it (logprobs on: the same evaluation path)
        answer = local.create_completion(record["prompt_text"], max_tokens=8, temperature=0.0, logprobs=1)
        expected = answer["choices"][0]
        assert record["output_text"] == expected["text"], prompt_id  # greedy: llama.cpp's own answer
        assert record["output_ids"] == local.tokenize(expected["text"].encode(), add_bos=False, special=True)
        assert record["stop_reason"] == ("eos" if expected["finish_reason"] == "stop" else "max_new_tokens")
        logprobs = [lp for lp in record["logprobs"] if lp is not None]
        assert all(lp <= 0 for lp in logprobs)  # present or missing, never a probability above 1
    assert by_key[("a", 0)]["output_ids"] == by_key[("a", 1)]["output_ids"]
