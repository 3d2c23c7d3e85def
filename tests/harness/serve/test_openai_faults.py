"""The ``openai`` backend against a real misbehaving server process (fault_server.py) on loopback.

A stream that breaks, stalls or carries garbage fails its sample only; the samples that worked are
recorded, the model ends ``failed`` with one line, and ``--resume`` against a healthy server finishes it.
429 is retried (honouring ``Retry-After``); a 4xx is one line naming the status and the server's message.
"""

from __future__ import annotations

import pytest

from harness.records import load_run
from tests.harness.serve.servers import fault_server, free_port
from tests.harness.test_runner import harness

httpx = pytest.importorskip("httpx")
pytest.importorskip("uvicorn")
pytest.importorskip("starlette")
pytest.importorskip("httpx_sse")

N_SAMPLES = 4


def suite(tmp_path):
    path = tmp_path / "faults.yaml"
    path.write_text(
        "name: faults\nsamples_per_prompt: 2\nwarmup: 0\ndevice: cpu\n"
        "sampling: {temperature: 0.8, top_k: 50, max_new_tokens: 8, seed: 3}\nprompts:\n"
        '  - {id: a, text: "Once upon a time"}\n  - {id: b, text: "The cat sat"}\n'
    )
    return path


def run(tmp_path, port, tokenizer, *options, out=None, levels=None):
    spec = f"openai:http://127.0.0.1:{port}/v1#fault"
    given = {"tokenizer": str(tokenizer), "retries": "1", **dict(o.split("=", 1) for o in options)}
    opts = [x for key, value in given.items() for x in ("--model-option", f"{key}={value}")]
    opts += ["--concurrency", levels] if levels else []
    out = out or tmp_path / "run"
    return out, harness("run", suite(tmp_path), "--models", spec, "--out", out, "--no-report", "--no-progress", *opts)


@pytest.fixture
def tokenizer(tiny_checkpoint):
    return tiny_checkpoint / "tokenizer.json"


@pytest.mark.parametrize("levels", [None, "2"], ids=["sequential", "load-level"])
def test_server_killed_mid_stream_fails_samples_and_resume_finishes(tmp_path, tokenizer, levels):
    port = free_port()
    with fault_server("die", port, tokenizer) as proc:
        out, result = run(tmp_path, port, tokenizer, levels=levels)
        proc.wait()
    assert result.returncode == 1, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "stream broke" in errors[0] and "--resume" in errors[0]
    partial = load_run(out, check_complete=False)
    assert partial.manifest.models[0].status == "failed" and len(partial.samples) < N_SAMPLES
    with fault_server("ok", port, tokenizer):
        again = ["--model-option", f"tokenizer={tokenizer}"]  # model options are given again on a resume
        resumed = harness("run", suite(tmp_path), "--resume", out, "--no-report", "--no-progress", *again)
    assert resumed.returncode == 0, resumed.stderr
    final = load_run(out)
    assert len(final.samples) == N_SAMPLES and all(r["output_ids"] == [5, 6, 7] for r in final.samples)
    assert final.manifest.models[0].status == "ok"
    if levels:  # the resumed level is still a level, with its load metrics
        assert final.manifest.models[0].concurrency == 2 and final.manifest.models[0].name.endswith("@c2")
        assert final.model_metrics[-1]["metrics"]["load_errors"] == 0


def test_a_stalled_stream_times_out_and_fails_its_samples(tmp_path, tokenizer):
    port = free_port()
    with fault_server("stall", port, tokenizer):
        out, result = run(tmp_path, port, tokenizer, "read_timeout=0.5")
    assert result.returncode == 1
    assert "stalled" in result.stderr and "read_timeout=0.5" in result.stderr
    assert load_run(out, check_complete=False).samples == []


def test_429_is_retried_and_the_run_completes(tmp_path, tokenizer):
    port = free_port()
    with fault_server("busy-once", port, tokenizer):
        out, result = run(tmp_path, port, tokenizer)
        stats = httpx.get(f"http://127.0.0.1:{port}/stats").json()
    assert result.returncode == 0, result.stderr
    assert len(load_run(out).samples) == N_SAMPLES
    assert stats["completions"] == N_SAMPLES + 1  # the refused request, sent again


def test_malformed_events_fail_the_sample_not_the_run(tmp_path, tokenizer):
    port = free_port()
    with fault_server("malformed", port, tokenizer):
        out, result = run(tmp_path, port, tokenizer)
    assert result.returncode == 1
    assert "malformed stream event" in result.stderr and f"{N_SAMPLES} of {N_SAMPLES} samples failed" in result.stderr
    assert load_run(out, check_complete=False).manifest.status == "failed"


def test_a_4xx_is_one_line_with_the_servers_message(tmp_path, tokenizer):
    port = free_port()
    with fault_server("reject", port, tokenizer):
        _, result = run(tmp_path, port, tokenizer)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert any("400" in line and "prompt is too long for fault" in line for line in errors), result.stderr
    assert "Traceback" not in result.stderr


def test_no_server_is_one_line_before_any_sample(tmp_path, tokenizer):
    out, result = run(tmp_path, free_port(), tokenizer, "retries=0")
    assert result.returncode == 2
    assert "cannot reach" in result.stderr and "harness serve" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_specs_and_options_are_refused_before_the_run_directory(tmp_path, tokenizer):
    for spec, options, words in (
        ("openai:ftp://x/v1", [], "http(s) URL"),
        ("openai:http://127.0.0.1:notaport/v1", [], "port"),
        ("openai:http://127.0.0.1:1/v1#m", ["--model-option", "read_timeout=-1"], "read_timeout"),
        ("openai:http://127.0.0.1:1/v1#m", ["--model-option", "prompt=json"], "prompt"),
    ):
        result = harness("run", suite(tmp_path), "--models", spec, "--out", tmp_path / "never", *options)
        assert result.returncode == 2 and words in result.stderr, result.stderr
        assert not (tmp_path / "never").exists()
