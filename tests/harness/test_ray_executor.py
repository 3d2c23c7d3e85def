"""``--executor ray`` on a real two-node Ray cluster on 127.0.0.1: same samples as a local run, faults survived.

The cluster is a head node and a second worker node, each started with ``ray start`` and one CPU, so a
suite's units really spread over two raylets; the fixture stops both (``ray stop --force``, then any
process of its own temp dir still alive) even when a test fails. The test that kills the worker node
comes last: the module's other tests need both nodes.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.records import load_run
from tests.ceilings import HANG_S
from tests.harness.ray_cluster import ENV, POLL_S, POLLS, free_ports, ray_cluster_on_loopback

pytest.importorskip("ray")
pytestmark = pytest.mark.slow

MODELS = "2.5m,5m"
CHECKPOINTS = Path(__file__).resolve().parents[2] / "tinylm_ref" / "checkpoints"
N_PROMPTS, SAMPLES = 8, 3
TOTAL = 2 * N_PROMPTS * SAMPLES
#: Long enough samples that the run can be caught mid-way (the fused decode step makes 48 tokens a few ms).
MAX_NEW = 128
#: Fields that say when and where a sample was made, not what it is.
WHEN_WHERE = {"token_times_ms", "end_ms", "node"}
#: GCS health checks every 0.5 s, a node declared dead after 3 missed: a killed node's units move soon.
FAST_HEALTH_CHECKS = {
    "RAY_health_check_period_ms": "500",
    "RAY_health_check_timeout_ms": "500",
    "RAY_health_check_failure_threshold": "3",
}


@pytest.fixture(scope="module")
def ray_cluster():
    """One cluster for the module: (GCS address, the worker node's node-manager port)."""
    with ray_cluster_on_loopback(FAST_HEALTH_CHECKS) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def suite(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ray_suite")
    prompts = "\n".join(f'  - {{id: p{i}, text: "Once upon a time number {i}"}}' for i in range(N_PROMPTS))
    path = root / "s.yaml"
    path.write_text(
        f"name: s\nsamples_per_prompt: {SAMPLES}\nwarmup: 1\ndevice: cpu\nthreads: 1\n"
        f"sampling: {{temperature: 0.8, top_k: 50, max_new_tokens: {MAX_NEW}, seed: 7}}\nprompts:\n{prompts}\n"
    )
    return path


def harness_cmd(*args) -> list[str]:
    return [sys.executable, "-m", "harness", "run", *map(str, args), "--no-progress", "--no-report"]


@pytest.fixture(scope="module")
def local_run(suite, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("local") / "run"
    result = subprocess.run(
        harness_cmd(suite, "--models", MODELS, "--out", out), env=ENV, capture_output=True, text=True, timeout=HANG_S
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return out


def assert_same_samples(ray_dir: Path, local_dir: Path) -> None:
    """Every sample of the Ray run equals the local run's, field by field (not when or where it ran)."""
    ours, theirs = load_run(ray_dir), load_run(local_dir)  # complete, and each key once (load_run refuses dups)
    timing = {name for name, meta in theirs.metrics.items() if meta.get("kind") == "timing"}
    by_key = {(r["model"], r["prompt_id"], r["sample_index"]): r for r in theirs.samples}
    assert len(ours.samples) == len(theirs.samples) == TOTAL
    for record in ours.samples:
        other = by_key[(record["model"], record["prompt_id"], record["sample_index"])]
        assert set(record) == set(other)
        for name in set(record) - WHEN_WHERE - {"metrics"}:
            assert record[name] == other[name], (name, record["model"], record["prompt_id"], record["sample_index"])
        quality = {k: v for k, v in record["metrics"].items() if k not in timing}
        assert quality == {k: v for k, v in other["metrics"].items() if k not in timing}
        assert set(record["metrics"]) == set(other["metrics"])
    assert ours.manifest.status == theirs.manifest.status == "complete"


def _count_lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def _unit_worker_pids() -> list[int]:
    """Ray worker processes executing a unit right now (Ray titles them ``ray::run_unit``)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if (entry / "cmdline").read_bytes().startswith(b"ray::run_unit"):
                    pids.append(int(entry.name))
    return pids


def _when_mid_run(samples: Path, act, driver: subprocess.Popen) -> int:
    """Poll (a bounded number of times) until some but not all samples are written, then ``act()``; a driver
    that ends first fails the test at once, with its output."""
    for _ in range(POLLS):
        done = _count_lines(samples)
        if 0 < done < TOTAL and act():
            return done
        if done >= TOTAL:
            break
        if driver.poll() is not None:
            pytest.fail(
                f"the driver ended (exit {driver.returncode}) at {done} of {TOTAL} samples: {driver.stdout.read()}"
            )
        time.sleep(POLL_S)
    pytest.fail(f"never caught the run mid-way ({_count_lines(samples)} of {TOTAL} samples)")


def test_ray_run_on_two_nodes_with_a_worker_killed_equals_local(ray_cluster, suite, local_run, tmp_path):
    out = tmp_path / "ray"
    driver = subprocess.Popen(
        harness_cmd(suite, "--models", MODELS, "--out", out, "--executor", "ray", "--ray-address", ray_cluster[0]),
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    killed: list[int] = []

    def kill_a_worker() -> bool:
        pids = _unit_worker_pids()
        if pids:
            os.kill(pids[0], signal.SIGKILL)
            killed.append(pids[0])
        return bool(pids)

    try:
        done_at_kill = _when_mid_run(out / "samples.jsonl", kill_a_worker, driver)
        output, _ = driver.communicate(timeout=HANG_S)
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
    assert driver.returncode == 0, output
    assert killed and done_at_kill < TOTAL
    assert_same_samples(out, local_run)
    samples = load_run(out).samples
    assert len({r["node"]["ray_node"] for r in samples}) == 2, "both nodes made samples"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["executor"]["kind"] == "ray" and manifest["executor"]["nodes"] == 2


@pytest.mark.parametrize(
    ("stop", "status", "resume_with"),
    [(signal.SIGKILL, "running", "local"), (signal.SIGTERM, "interrupted", "ray")],
    ids=["kill-9-then-local-resume", "sigterm-then-ray-resume"],
)
def test_driver_stopped_mid_run_resumes_to_the_local_run(
    ray_cluster, suite, local_run, tmp_path, stop, status, resume_with
):
    """kill -9 leaves "running" (no chance to say more), SIGTERM "interrupted"; either resumes to the local run."""
    out = tmp_path / "ray"
    driver = subprocess.Popen(
        harness_cmd(suite, "--models", MODELS, "--out", out, "--executor", "ray", "--ray-address", ray_cluster[0]),
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        _when_mid_run(out / "samples.jsonl", lambda: driver.send_signal(stop) or True, driver)
        output, _ = driver.communicate(timeout=HANG_S)
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
    assert driver.returncode == (-signal.SIGKILL if stop == signal.SIGKILL else 130), output
    kept = load_run(out, check_complete=False)
    assert kept.manifest.status == status and 0 < len(kept.samples) < TOTAL
    extra = ["--executor", "ray", "--ray-address", ray_cluster[0]] if resume_with == "ray" else []
    result = subprocess.run(
        harness_cmd(suite, "--resume", out, *extra), env=ENV, capture_output=True, text=True, timeout=HANG_S
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert_same_samples(out, local_run)


def test_unreachable_address_is_one_line_and_leaves_no_directory(suite, tmp_path):
    (port,) = free_ports(1)
    out = tmp_path / "never"
    result = subprocess.run(
        harness_cmd(suite, "--models", "2.5m", "--out", out, "--executor", "ray", "--ray-address", f"127.0.0.1:{port}"),
        env=ENV,
        capture_output=True,
        text=True,
        timeout=HANG_S,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == [
        f"error: --ray-address 127.0.0.1:{port}: nothing answers there (Connection refused); start the cluster ('ray start --head') or check the address ('ray status' on the head node)"
    ]
    assert not out.exists()


def test_a_unit_that_raises_fails_its_model_and_the_other_runs(ray_cluster, suite, local_run, tmp_path):
    """A checkpoint whose weights are cut short fails to load inside a worker: that model is failed with the
    loader's one-line error (exit 2, as locally), its other units are cancelled, and 2.5m still completes."""
    broken = tmp_path / "broken_ckpt"
    shutil.copytree(CHECKPOINTS / "2.5m", broken)
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    out = tmp_path / "ray"
    result = subprocess.run(
        harness_cmd(
            suite, "--models", f"2.5m,{broken}", "--out", out, "--executor", "ray", "--ray-address", ray_cluster[0]
        ),
        env=ENV,
        capture_output=True,
        text=True,
        timeout=HANG_S,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and "cannot read weights" in result.stderr
    run = load_run(out)
    assert {m.name: m.status for m in run.manifest.models} == {"2.5m": "ok", str(broken): "failed"}
    assert "cannot read weights" in run.manifest.model(str(broken)).error
    ours = {(r["prompt_id"], r["sample_index"]): r["output_ids"] for r in run.samples}
    theirs = {
        (r["prompt_id"], r["sample_index"]): r["output_ids"]
        for r in load_run(local_run).samples
        if r["model"] == "2.5m"
    }
    assert ours == theirs


def test_a_ray_shard_and_a_local_shard_merge_into_the_local_run(ray_cluster, suite, local_run, tmp_path):
    """--shard works under Ray too: shard 1/2 on the cluster, 2/2 here, merged, is the local run."""
    cluster = ["--executor", "ray", "--ray-address", ray_cluster[0]]
    for shard, extra in (("1/2", cluster), ("2/2", [])):
        out = tmp_path / f"shard{shard[0]}"
        result = subprocess.run(
            harness_cmd(suite, "--models", MODELS, "--shard", shard, "--out", out, *extra),
            env=ENV,
            capture_output=True,
            text=True,
            timeout=HANG_S,
        )
        assert result.returncode == 0, result.stdout + result.stderr
    merged = subprocess.run(
        [sys.executable, "-m", "harness", "merge", tmp_path / "shard1", tmp_path / "shard2", "-o", tmp_path / "merged"],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=HANG_S,
    )
    assert merged.returncode == 0, merged.stdout + merged.stderr
    assert 0 < len(load_run(tmp_path / "shard1").samples) < TOTAL
    assert_same_samples(tmp_path / "merged", local_run)


def _raylet_pid(node_manager_port: int) -> int | None:
    flag = f"--node_manager_port={node_manager_port}".encode()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                cmdline = (entry / "cmdline").read_bytes()
                if b"raylet" in cmdline.split(b"\0")[0] and flag in cmdline:
                    return int(entry.name)
    return None


def test_worker_node_lost_mid_run_still_equals_local(ray_cluster, suite, local_run, tmp_path):
    """The worker node's raylet killed mid-run (its workers die with it): Ray moves its units to the head."""
    address, worker_port = ray_cluster
    raylet = _raylet_pid(worker_port)
    assert raylet is not None
    out = tmp_path / "ray"
    driver = subprocess.Popen(
        harness_cmd(suite, "--models", MODELS, "--out", out, "--executor", "ray", "--ray-address", address),
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        _when_mid_run(out / "samples.jsonl", lambda: os.kill(raylet, signal.SIGKILL) or True, driver)
        output, _ = driver.communicate(timeout=HANG_S)
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
    assert driver.returncode == 0, output
    assert_same_samples(out, local_run)
