"""``openai:`` over ``harness serve`` against the direct ``tinylm`` backend: the same tokens, the same metrics.

Both run the same suite in one run over a real tiny checkpoint; the server is a real ``harness serve``
process on a free loopback port. Greedy and seeded sampling must give identical token ids (the client sends
each sample's derived seed, the server honours it), and the per-token log-probabilities agree to JSON's
rounding, so perplexity and average token probability agree too.
"""

from __future__ import annotations

import json
import time

import pytest

from harness.records import load_run
from tests.ceilings import HANG_S
from tests.harness.serve.servers import free_port, harness_serve
from tests.harness.test_runner import FAULTS, harness, start_harness

pytest.importorskip("httpx")
pytest.importorskip("uvicorn")
pytest.importorskip("starlette")


def suite(tmp_path, temperature: float, name: str = "served", warmup: int = 1):
    prompts = "\n".join(f'  - {{id: p{i}, text: "Once upon a time number {i}"}}' for i in range(3))
    path = tmp_path / f"{name}.yaml"
    path.write_text(
        f"name: {name}\nsamples_per_prompt: 2\nwarmup: {warmup}\ndevice: cpu\n"
        f"sampling: {{temperature: {temperature}, top_k: 50, max_new_tokens: 16, seed: 11}}\nprompts:\n{prompts}\n"
    )
    return path


@pytest.fixture(scope="module")
def server(tiny_checkpoint):
    port = free_port()
    with harness_serve(tiny_checkpoint, port, "--name", "tiny"):
        yield f"openai:http://127.0.0.1:{port}/v1#tiny"


def by_key(run_dir, model):
    return {(r["prompt_id"], r["sample_index"]): r for r in load_run(run_dir).samples if r["model"] == model}


@pytest.mark.parametrize("temperature", [0.0, 0.8], ids=["greedy", "seeded"])
def test_served_samples_equal_direct_samples(tmp_path, tiny_checkpoint, server, temperature):
    direct = f"tinylm:{tiny_checkpoint}"
    out = tmp_path / "run"
    harness(
        "run",
        suite(tmp_path, temperature),
        "--models",
        f"{server},{direct}",
        "--out",
        out,
        "--no-report",
        "--no-progress",
        "--threads",
        "1",
        check=0,
    )
    served, local = by_key(out, server), by_key(out, direct)
    assert served.keys() == local.keys() and len(local) == 6
    for key, record in local.items():
        assert served[key]["output_ids"] == record["output_ids"], key
        assert served[key]["output_text"] == record["output_text"]
        assert served[key]["logprobs"] == pytest.approx(record["logprobs"], abs=1e-5)
        for metric in ("perplexity", "avg_token_prob", "repetition_rate", "distinct_2"):
            assert served[key]["metrics"][metric] == pytest.approx(record["metrics"][metric], rel=1e-5), metric
    if temperature > 0:  # sampling really happened: different samples of one prompt differ
        assert any(local[(f"p{i}", 0)]["output_ids"] != local[(f"p{i}", 1)]["output_ids"] for i in range(3))
    entry = load_run(out).manifest.model(server)
    extra = entry.info["extra"]
    assert extra["token_ids"] == "server token ids" and extra["logprobs"] == "server"
    assert extra["server"]["seed_echoed"] is True
    top_k = 50 if temperature > 0 else None  # greedy sends no top_k
    assert extra["server"]["echoed"]["sampling"] == {"max_tokens": 16, "temperature": temperature, "top_k": top_k}
    assert entry.info["weights_sha256"] == load_run(out).manifest.model(direct).info["weights_sha256"]


def test_load_levels_are_rows_with_load_metrics_and_the_same_tokens(tmp_path, tiny_checkpoint, server):
    out = tmp_path / "load"
    harness(
        "run",
        suite(tmp_path, 0.8),
        "--models",
        server,
        "--concurrency",
        "1,3",
        "--out",
        out,
        "--no-progress",
        check=0,
    )
    report = (out / "report.html").read_text(encoding="utf-8")
    assert 'data-load="ttft"' in report and 'data-load="itl"' in report  # latency vs throughput by level
    run = load_run(out)
    rows = [f"{server}@c1", f"{server}@c3"]
    assert run.manifest.model_names == rows
    assert by_key(out, rows[0]).keys() == by_key(out, rows[1]).keys()
    for key, record in by_key(out, rows[0]).items():  # concurrency changes timing, never tokens
        assert by_key(out, rows[1])[key]["output_ids"] == record["output_ids"]
    model_metrics = {r["model"]: r["metrics"] for r in run.model_metrics}
    for row, level in zip(rows, (1, 3), strict=True):
        values = model_metrics[row]
        assert values["load_concurrency"] == level and values["load_errors"] == 0
        assert values["load_ttft_p50_ms"] <= values["load_ttft_p95_ms"] <= values["load_ttft_p99_ms"]
        assert values["load_itl_p50_ms"] <= values["load_itl_p99_ms"]
        assert values["load_requests_per_s"] > 0 and values["load_output_tokens_per_s"] > 0
        assert values["peak_mem_mb"] > 0  # the server's peak, from its /health
    gate = harness(
        "gate", out, "--baseline", out, "--metric", "load_errors", "--metric", "load_ttft_p95_ms", "--format", "json"
    )
    verdicts = {(r["metric"], r["model"]): r["verdict"] for r in json.loads(gate.stdout)["results"]}
    assert gate.returncode == 0 and set(verdicts) == {(m, r) for m in ("load_errors", "load_ttft_p95_ms") for r in rows}
    direct = harness(
        "run",
        suite(tmp_path, 0.8),
        "--models",
        f"tinylm:{tiny_checkpoint}",
        "--concurrency",
        "2",
        "--out",
        tmp_path / "refused",
    )
    assert direct.returncode == 2 and "harness serve" in direct.stderr
    assert not (tmp_path / "refused").exists()


def test_protocol_answers_and_refusals(server):
    import httpx

    base = server.removeprefix("openai:").split("#")[0]
    listed = httpx.get(f"{base}/models").json()["data"][0]
    assert listed["id"] == "tiny" and listed["max_model_len"] == 64 and listed["harness"]["backend"] == "tinylm"
    body = {"model": "tiny", "prompt": "Once upon a time", "max_tokens": 5, "temperature": 0, "logprobs": 1}
    whole = httpx.post(f"{base}/completions", json=body).json()
    choice = whole["choices"][0]
    assert len(choice["token_ids"]) == len(choice["logprobs"]["token_logprobs"]) == whole["usage"]["completion_tokens"]
    assert choice["finish_reason"] in ("stop", "length")
    again = httpx.post(f"{base}/completions", json={**body, "temperature": 0.8, "seed": 5}).json()
    same = httpx.post(f"{base}/completions", json={**body, "temperature": 0.8, "seed": 5}).json()
    assert again["choices"][0]["token_ids"] == same["choices"][0]["token_ids"]
    for bad, field in (
        (dict(n=2), "'n'"),
        (dict(top_p=0.5), "top_p"),
        (dict(max_tokens=0), "max_tokens"),
        (dict(prompt=[]), "prompt"),
        (dict(repeat_penalty=1.1), "repeat_penalty"),
        (dict(min_p=0.05), "min_p"),
        (dict(stop=["."]), "stop"),
    ):
        answer = httpx.post(f"{base}/completions", json={**body, **bad})
        assert answer.status_code == 400 and field in answer.json()["error"]["message"], bad
    assert httpx.post(f"{base}/completions", json={**body, "model": "other"}).status_code == 404
    assert httpx.post(f"{base}/completions", content=b"{not json").status_code == 400
    lines = [
        json.loads(line[6:])
        for line in httpx.post(f"{base}/completions", json={**body, "stream": True}).text.split("\n\n")
        if line.startswith("data: {")
    ]
    assert [c["choices"][0]["token_ids"] for c in lines[:-1]] == [[t] for t in choice["token_ids"]]


def test_serving_on_a_port_in_use_is_one_line(tiny_checkpoint, server):
    port = server.split(":")[3].split("/")[0]  # the running server's port
    result = harness("serve", f"tinylm:{tiny_checkpoint}", "--port", port)
    assert result.returncode == 2 and result.stderr.strip().startswith(f"error: cannot serve on 127.0.0.1:{port}")
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_full_queue_answers_503_and_the_client_retries(tmp_path, monkeypatch):
    """--max-queue 1 with 4 streams in flight: the server refuses the extra ones with 503 + Retry-After, the
    client retries them, and every sample arrives (with the direct backend's tokens).

    The served model is held busy (tests/harness/fault_plugins, ``fault:held``) until the server has refused a
    request, so the queue is full by construction: with the fused decode step a tiny model answers in a few
    milliseconds, and on a loaded machine four client threads no longer overlap that window by chance."""
    import httpx

    hold = tmp_path / "hold"
    monkeypatch.setenv("HARNESS_PLUGINS_DIR", str(FAULTS))
    monkeypatch.setenv("FAULT_HOLD", str(hold))
    port = free_port()
    spec = f"openai:http://127.0.0.1:{port}/v1#held"
    suite_path = suite(tmp_path, 0.8, warmup=0)  # no warmup: its lone request would wait on the hold alone
    out = tmp_path / "queue"
    with harness_serve("fault:held", port, "--name", "held", "--max-queue", "1"):
        health_url = f"http://127.0.0.1:{port}/health"
        hold.touch()
        client = start_harness(
            "run", suite_path, "--models", spec, "--concurrency", "4", "--out", out, "--no-report", "--no-progress",
            "--model-option", "retries=100",
        )  # fmt: skip
        try:
            deadline = time.monotonic() + HANG_S
            while httpx.get(health_url).json()["refused"] == 0:  # one request holds the worker, the next is refused
                assert client.poll() is None, client.communicate()
                assert time.monotonic() < deadline, "the server never refused a request"
                time.sleep(0.05)
        finally:
            hold.unlink(missing_ok=True)
        stdout, stderr = client.communicate(timeout=HANG_S)
        assert client.returncode == 0, stdout + stderr
        health = httpx.get(health_url).json()
    assert health["refused"] > 0 and health["queued"] == 0  # the 503 path really ran
    run = load_run(out)
    assert len(run.samples) == 6
    assert {r["model"]: r["metrics"] for r in run.model_metrics}[f"{spec}@c4"]["load_errors"] == 0
    direct = tmp_path / "direct"
    harness("run", suite_path, "--models", "fault:held", "--out", direct, "--no-report", "--no-progress", check=0)
    served = {(r["prompt_id"], r["sample_index"]): r["output_ids"] for r in run.samples}
    assert served == {(r["prompt_id"], r["sample_index"]): r["output_ids"] for r in load_run(direct).samples}
