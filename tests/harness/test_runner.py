"""The runner end to end on real (tiny) models: determinism, resume, faults and interruptions."""

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from harness.records import load_run
from harness.work import Shard, derive_seed
from tests.ceilings import HANG_S

FAULTS = Path(__file__).parent / "fault_plugins"
REPO = Path(__file__).resolve().parents[2]


def write_suite(tmp_path, name="t", n_prompts=4, samples=2, max_new=24, extra=""):
    prompts = "\n".join(
        f'  - {{id: p{i}, category: c{i % 2}, text: "Once upon a time number {i}"}}' for i in range(n_prompts)
    )
    path = tmp_path / f"{name}.yaml"
    path.write_text(
        f"name: {name}\nsamples_per_prompt: {samples}\nwarmup: 1\ndevice: cpu\n"
        f"sampling: {{temperature: 0.8, top_k: 50, max_new_tokens: {max_new}, seed: 7}}\n{extra}prompts:\n{prompts}\n"
    )
    return path


def harness(*args, cwd=None, env=None, check=None):
    """``python -m harness ARGS``; without ``cwd`` it runs in a scratch directory, so a run without ``--out``
    (default ./runs/) never writes into the checkout, where a second copy of the suite would meet it."""
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    with tempfile.TemporaryDirectory(prefix="harness-cwd-") as scratch:
        result = subprocess.run(
            [sys.executable, "-m", "harness", *map(str, args)],
            capture_output=True,
            text=True,
            cwd=cwd or scratch,
            env=full_env,
            timeout=HANG_S,
        )
    if check is not None:
        assert result.returncode == check, result.stdout + result.stderr
    return result


def _default_sigint() -> None:
    """In the child before exec: a test suite started from a background shell job inherits SIGINT ignored
    (shells do that for '&' jobs, and Python then keeps ignoring it); the harness under test must see the
    Ctrl-C a user's terminal would send."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_harness(*args):
    """``harness`` in the background (for interrupting it or racing it)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "harness", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        preexec_fn=_default_sigint,
    )


def ids_by_key(run_dir):
    return {(r["model"], r["prompt_id"], r["sample_index"]): r["output_ids"] for r in load_run(run_dir).samples}


def test_derive_seed_depends_only_on_its_inputs():
    assert derive_seed(1, "a", 0) == derive_seed(1, "a", 0)
    assert len({derive_seed(1, "a", 0), derive_seed(1, "a", 1), derive_seed(1, "b", 0), derive_seed(2, "a", 0)}) == 4


def test_run_writes_directory_and_same_seed_gives_same_tokens(tmp_path, tiny_checkpoint):
    suite = write_suite(tmp_path)
    models = f"tinylm:random/2.5m,{tiny_checkpoint}"
    first = harness("run", suite, "--models", models, "--out", tmp_path / "a", "--no-report", "--no-progress", check=0)
    harness("run", suite, "--models", models, "--out", tmp_path / "b", "--no-report", "--no-progress", check=0)
    assert "perplexity" in first.stdout and "tokens_generated" in first.stdout  # the Table 2 layout
    run = load_run(tmp_path / "a")
    assert len(run.samples) == 2 * 4 * 2
    assert ids_by_key(tmp_path / "a") == ids_by_key(tmp_path / "b")
    record = run.samples[0]
    for field in (
        "model",
        "prompt_id",
        "sample_index",
        "seed",
        "prompt_text",
        "output_text",
        "output_ids",
        "eos_hit",
        "token_times_ms",
        "logprobs",
        "metrics",
        "metric_errors",
    ):
        assert field in record
    assert len(record["token_times_ms"]) == len(record["output_ids"]) == record["metrics"]["tokens_generated"]
    manifest = run.manifest.to_json()
    assert manifest["status"] == "complete"
    assert manifest["environment"]["packages"]["torch"] and manifest["environment"]["threads"] >= 1
    info = manifest["models"][1]["info"]
    assert info["weights_sha256"] and len(info["weights_sha256"]) == 64 and info["parameters"] > 0
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    stats = summary["metrics"]["tps"]["models"]["tinylm:random/2.5m"]
    assert stats["n"] == 8 and stats["ci_low"] <= stats["mean"] <= stats["ci_high"]
    assert summary["metrics"]["perplexity"]["higher_is_better"] is False
    assert "tps" in (tmp_path / "a" / "summary.csv").read_text()


def test_the_manifest_names_the_decode_step_and_the_fallback_samples_the_same_tokens(tmp_path):
    """The fused C step is the default where it builds; switched off (as without a compiler) the run says so
    in the manifest, with the reason, and samples the same tokens through FastDecoder."""
    from tinylm_ref import native

    suite = write_suite(tmp_path, n_prompts=2, samples=2)
    base = ("run", suite, "--models", "2.5m", "--no-report", "--no-progress")
    harness(*base, "--out", tmp_path / "fused", check=0)
    harness(*base, "--out", tmp_path / "eager", env={"TINYLM_FUSED": "0"}, check=0)
    kernels = [load_run(tmp_path / d).manifest.models[0].info["extra"]["decode_kernel"] for d in ("fused", "eager")]
    expected = {"kernel": "fused", "reason": None} if native.load_kernel() else {"kernel": "eager"}
    assert kernels[0].items() >= expected.items()
    assert kernels[1] == {"kernel": "eager", "reason": "disabled by TINYLM_FUSED=0"}
    assert ids_by_key(tmp_path / "fused") == ids_by_key(tmp_path / "eager")


def test_sample_does_not_depend_on_other_models_or_order(tmp_path, tiny_checkpoint):
    suite = write_suite(tmp_path, n_prompts=3, samples=1)
    harness(
        "run",
        suite,
        "--models",
        f"tinylm:random/2.5m,{tiny_checkpoint}",
        "--out",
        tmp_path / "a",
        "--no-report",
        check=0,
    )
    harness("run", suite, "--models", str(tiny_checkpoint), "--out", tmp_path / "b", "--no-report", check=0)
    a, b = ids_by_key(tmp_path / "a"), ids_by_key(tmp_path / "b")
    assert {k: v for k, v in a.items() if k[0] == str(tiny_checkpoint)} == b


def test_crashing_backend_fails_its_model_only(tmp_path):
    suite = write_suite(tmp_path)
    result = harness(
        "run",
        suite,
        "--models",
        "fault:crash2,tinylm:random/2.5m",
        "--out",
        tmp_path / "r",
        "--plugins-dir",
        FAULTS,
        "--no-report",
        check=1,
    )
    assert "model fault:crash2 crashed" in result.stderr and "simulated backend crash" in result.stderr
    run = load_run(tmp_path / "r")
    statuses = {m.name: m.status for m in run.manifest.models}
    assert statuses == {"fault:crash2": "failed", "tinylm:random/2.5m": "ok"}
    assert sum(r["model"] == "fault:crash2" for r in run.samples) == 2  # the samples made before the crash are kept
    assert sum(r["model"] == "tinylm:random/2.5m" for r in run.samples) == 8


def test_metric_that_raises_is_recorded_and_others_go_on(tmp_path):
    suite = write_suite(tmp_path, extra="metrics: [always_fails, tokens_generated, repetition_rate]\n")
    harness(
        "run",
        suite,
        "--models",
        "tinylm:random/2.5m",
        "--out",
        tmp_path / "r",
        "--plugins-dir",
        FAULTS,
        "--no-report",
        check=0,
    )
    for record in load_run(tmp_path / "r").samples:
        assert record["metric_errors"] == {"always_fails": "ZeroDivisionError: metric bug"}
        assert record["metrics"]["always_fails"] is None and record["metrics"]["tokens_generated"] >= 0


def test_nan_logits_flag_the_sample_and_the_run_goes_on(tmp_path):
    suite = write_suite(tmp_path, n_prompts=2, samples=1)
    harness(
        "run",
        suite,
        "--models",
        "fault:nan,tinylm:random/2.5m",
        "--out",
        tmp_path / "r",
        "--plugins-dir",
        FAULTS,
        "--no-report",
        check=0,
    )
    run = load_run(tmp_path / "r")
    nan_samples = [r for r in run.samples if r["model"] == "fault:nan"]
    assert len(nan_samples) == 2 and all(
        r["flags"] == ["nonfinite"] and r["stop_reason"] == "nonfinite" for r in nan_samples
    )
    assert sum(r["model"] == "tinylm:random/2.5m" for r in run.samples) == 2


def _wait_for_samples(path, n, proc, timeout=HANG_S):
    """Until ``n`` samples are on disk while ``proc`` is alive; the ceiling is only a safety net."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().count("\n") >= n:
            return
        if proc.poll() is not None:
            raise AssertionError(f"run ended early: {proc.stderr.read()}")
        time.sleep(0.05)
    raise AssertionError("no samples appeared")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL])
def test_interrupted_run_resumes_to_the_same_samples(tmp_path, sig):
    suite = write_suite(tmp_path, n_prompts=6, samples=2, max_new=160)
    models = "tinylm:random/10m,tinylm:random/2.5m"
    harness("run", suite, "--models", models, "--out", tmp_path / "ref", "--no-report", check=0)
    proc = start_harness(
        "run", str(suite), "--models", models, "--out", str(tmp_path / "int"), "--no-report", "--no-progress"
    )
    _wait_for_samples(tmp_path / "int" / "samples.jsonl", 3, proc)
    proc.send_signal(sig)
    code = proc.wait(timeout=HANG_S)
    partial = load_run(tmp_path / "int")
    kept = len(partial.samples)
    assert kept >= 3  # nothing that was written is lost
    if sig != signal.SIGKILL:
        stderr = proc.stderr.read()
        assert code == 130 and partial.manifest.status == "interrupted", (code, kept, stderr[-2000:])
        assert "--resume" in stderr
    harness("run", suite, "--resume", tmp_path / "int", "--no-report", check=0)
    resumed = load_run(tmp_path / "int")
    assert resumed.manifest.status == "complete"
    assert ids_by_key(tmp_path / "int") == ids_by_key(tmp_path / "ref")
    assert len(resumed.samples) == len(load_run(tmp_path / "ref").samples)


def test_shards_partition_the_work():
    keys = [(m, f"p{i}", s) for m in ("a", "b") for i in range(50) for s in range(2)]
    shards = [Shard(k, 3) for k in (1, 2, 3)]
    owners = [[s.owns(*key) for s in shards] for key in keys]
    assert all(sum(o) == 1 for o in owners)
    assert all(sum(o[i] for o in owners) > 20 for i in range(3))


def test_a_run_directory_in_use_is_refused(tmp_path):
    from harness.errors import UserError
    from harness.records import RunLock

    with RunLock(tmp_path), pytest.raises(UserError, match="in use by harness process"):
        RunLock(tmp_path).__enter__()
    with RunLock(tmp_path):  # released on exit
        pass


def test_resume_of_a_directory_being_written_is_refused(tmp_path):
    suite = write_suite(tmp_path, n_prompts=10, samples=3, max_new=200)  # long enough to overlap the second call
    first = start_harness(
        "run", str(suite), "--models", "tinylm:random/10m", "--out", str(tmp_path / "r"), "--no-report", "--no-progress"
    )
    _wait_for_samples(tmp_path / "r" / "samples.jsonl", 1, first)
    first.send_signal(signal.SIGSTOP)  # holds its lock, and cannot finish before the second call, however slow
    try:
        second = harness("run", suite, "--resume", tmp_path / "r", "--no-report")
    finally:
        first.send_signal(signal.SIGCONT)
    assert second.returncode == 2 and "in use by harness process" in second.stderr
    assert first.wait(timeout=HANG_S) == 0
    assert len(load_run(tmp_path / "r").samples) == 30


def test_two_runs_never_share_a_directory(tmp_path):
    from harness.records import new_run_dir

    paths = {new_run_dir(tmp_path, "s") for _ in range(20)}
    assert len(paths) == 20


def test_batched_run_gives_the_batch_1_tokens_and_is_labelled(tmp_path, tiny_checkpoint):
    suite = write_suite(tmp_path, n_prompts=5, samples=2, max_new=30)
    harness("run", suite, "--models", tiny_checkpoint, "--out", tmp_path / "one", "--no-report", check=0)
    harness(
        "run", suite, "--models", tiny_checkpoint, "--out", tmp_path / "many", "--batch-size", 4, "--no-report", check=0
    )
    assert ids_by_key(tmp_path / "many") == ids_by_key(tmp_path / "one")
    batched = load_run(tmp_path / "many")
    assert all(r["batched"] for r in batched.samples)
    assert not any(r["batched"] for r in load_run(tmp_path / "one").samples)
    throughput = batched.manifest.models[0].throughput.to_json()
    assert throughput["batch_size"] == 4 and throughput["tokens"] == sum(len(r["output_ids"]) for r in batched.samples)


def test_shards_merge_into_the_single_machine_run(tmp_path, tiny_checkpoint):
    suite = write_suite(tmp_path, n_prompts=5, samples=2, max_new=20)
    models = f"tinylm:random/2.5m,{tiny_checkpoint}"
    harness("run", suite, "--models", models, "--out", tmp_path / "single", "--no-report", check=0)
    for k in (1, 2, 3):
        harness(
            "run", suite, "--models", models, "--out", tmp_path / f"s{k}", "--shard", f"{k}/3", "--no-report", check=0
        )
    sizes = [len(load_run(tmp_path / f"s{k}").samples) for k in (1, 2, 3)]
    assert sum(sizes) == 20 and all(sizes)
    incomplete = harness("merge", tmp_path / "s1", tmp_path / "s2", "-o", tmp_path / "bad", check=2)
    assert "do not cover 1..3" in incomplete.stderr
    harness("merge", tmp_path / "s1", tmp_path / "s2", tmp_path / "s3", "-o", tmp_path / "merged", check=0)
    merged, single = load_run(tmp_path / "merged"), load_run(tmp_path / "single")
    assert ids_by_key(tmp_path / "merged") == ids_by_key(tmp_path / "single")
    assert [(r["model"], r["prompt_id"], r["sample_index"]) for r in merged.samples] == [
        (r["model"], r["prompt_id"], r["sample_index"]) for r in single.samples
    ]
    for model in ("tinylm:random/2.5m", str(tiny_checkpoint)):  # peak memory: the peak over the shards
        shard_peaks = [
            r["metrics"]["peak_mem_mb"]
            for k in (1, 2, 3)
            for r in load_run(tmp_path / f"s{k}").model_metrics
            if r["model"] == model
        ]
        (merged_entry,) = [r for r in merged.model_metrics if r["model"] == model]
        assert merged_entry["metrics"]["peak_mem_mb"] == max(shard_peaks)
    merged_summary = json.loads((tmp_path / "merged" / "summary.json").read_text())
    single_summary = json.loads((tmp_path / "single" / "summary.json").read_text())
    for metric in ("perplexity", "repetition_rate", "tokens_generated"):
        for model, stats in single_summary["metrics"][metric]["models"].items():
            merged_stats = merged_summary["metrics"][metric]["models"][model]
            # the same tokens; a log-prob may differ in its last bit when the thread policy changed the
            # thread count under load (docs/performance.md), so perplexity agrees to 1e-6, not bitwise
            for key, value in stats.items():
                assert merged_stats[key] == pytest.approx(value, rel=1e-6, abs=1e-9), (metric, model, key)


def test_bfloat16_decoding_is_recorded_and_seeded(tmp_path, tiny_checkpoint):
    suite = write_suite(tmp_path, n_prompts=3, samples=1, max_new=20)
    for name, dtype in (("a", "bfloat16"), ("b", "bfloat16"), ("f32", "float32")):
        harness(
            "run",
            suite,
            "--models",
            tiny_checkpoint,
            "--out",
            tmp_path / name,
            "--dtype",
            dtype,
            "--no-report",
            check=0,
        )
    a, b, f32 = (load_run(tmp_path / name) for name in ("a", "b", "f32"))
    assert a.manifest.models[0].info["dtype"] == "bfloat16"
    assert f32.manifest.models[0].info["dtype"] == "float32"
    assert ids_by_key(tmp_path / "a") == ids_by_key(tmp_path / "b")
    assert [r["logprobs"] for r in a.samples] == [r["logprobs"] for r in b.samples]
    # the first token comes from the float32 prefill; later ones from the bf16 matrices
    assert [r["logprobs"][0] for r in a.samples] == [r["logprobs"][0] for r in f32.samples]
    assert [r["logprobs"][1:] for r in a.samples] != [r["logprobs"][1:] for r in f32.samples]


def test_merge_refuses_shards_run_with_another_dtype(tmp_path):
    suite = write_suite(tmp_path, n_prompts=2, samples=1, max_new=6)
    for k, dtype in ((1, "float32"), (2, "bfloat16")):
        harness(
            *("run", suite, "--models", "tinylm:random/2.5m", "--out", tmp_path / f"s{k}"),
            *("--shard", f"{k}/2", "--dtype", dtype, "--no-report"),
            check=0,
        )
    result = harness("merge", tmp_path / "s1", tmp_path / "s2", "-o", tmp_path / "m", check=2)
    assert "dtype 'bfloat16' differs" in result.stderr and not (tmp_path / "m").exists()
