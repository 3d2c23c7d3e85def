"""``--executor ray`` on a real two-node Ray cluster on 127.0.0.1: same samples as a local run, faults survived.

The cluster is a head node and a second worker node, each started with ``ray start`` and one CPU, so a
suite's units really spread over two raylets; the fixture stops both (``ray stop --force``, then any
process of its own temp dir still alive) even when a test fails.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from harness.records import load_run
from tests.ceilings import HANG_S

pytest.importorskip("ray")
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
RAY = Path(sys.executable).parent / "ray"
MODELS = "2.5m,5m"
N_PROMPTS, SAMPLES = 8, 3
TOTAL = 2 * N_PROMPTS * SAMPLES
ENV = {
    **os.environ,
    "HF_HUB_OFFLINE": "1",
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_DISABLE_DOCKER_CPU_WARNING": "1",
    # A cluster of its own token: no other Ray on this machine can join it, and its nodes and driver agree.
    "RAY_AUTH_MODE": "token",
    "RAY_AUTH_TOKEN": secrets.token_hex(32),
}
#: Fields that say when and where a sample was made, not what it is.
WHEN_WHERE = {"token_times_ms", "end_ms", "node"}
POLL_S = 0.05
POLLS = int(HANG_S / POLL_S)


def free_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def node_ports(ports: list[int]) -> list[str]:
    names = (
        "--node-manager-port",
        "--object-manager-port",
        "--dashboard-agent-listen-port",
        "--dashboard-agent-grpc-port",
        "--runtime-env-agent-port",
        "--metrics-export-port",
    )
    return [arg for name, port in zip(names, ports, strict=True) for arg in (name, str(port))]


def _processes_under(temp: Path) -> list[int]:
    """Pids of processes whose command line names the cluster's temp dir (its raylets, workers, GCS)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            with contextlib.suppress(OSError):
                if str(temp).encode() in (entry / "cmdline").read_bytes():
                    pids.append(int(entry.name))
    return pids


def _wait_for_nodes(address: str, count: int) -> None:
    script = (
        "import ray, time, sys\n"
        f"ray.init(address={address!r}, log_to_driver=False, logging_level='error')\n"
        f"for _ in range({POLLS}):\n"
        f"    if sum(n['Alive'] for n in ray.nodes()) >= {count}: sys.exit(0)\n"
        f"    time.sleep({POLL_S})\n"
        "sys.exit(1)\n"
    )
    subprocess.run([sys.executable, "-c", script], env=ENV, check=True, timeout=HANG_S, capture_output=True)


@pytest.fixture(scope="module")
def ray_cluster():
    """A head and a worker node on 127.0.0.1 (one CPU each); yields the GCS address."""
    temp = Path(tempfile.mkdtemp(prefix="rt", dir="/tmp"))  # short: Ray's socket paths have a length limit
    gcs, *ports = free_ports(13)
    common = [
        "--node-ip-address",
        "127.0.0.1",
        "--num-cpus",
        "1",
        "--num-gpus",
        "0",
        "--object-store-memory",
        str(100 * 2**20),
        "--disable-usage-stats",
    ]
    address = f"127.0.0.1:{gcs}"
    try:
        head = [str(RAY), "start", "--head", "--port", str(gcs)]
        head += ["--include-dashboard=false", "--temp-dir", str(temp), *common, *node_ports(ports[:6])]
        worker = [str(RAY), "start", "--address", address, *common, *node_ports(ports[6:12])]
        for command in (head, worker):
            started = subprocess.run(command, env=ENV, timeout=HANG_S, capture_output=True, text=True)
            assert started.returncode == 0, started.stdout[-2000:] + started.stderr[-2000:]
        _wait_for_nodes(address, 2)
        yield address
    finally:
        subprocess.run([str(RAY), "stop", "--force"], env=ENV, timeout=HANG_S, capture_output=True)
        for pid in _processes_under(temp):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture(scope="module")
def suite(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ray_suite")
    prompts = "\n".join(f'  - {{id: p{i}, text: "Once upon a time number {i}"}}' for i in range(N_PROMPTS))
    path = root / "s.yaml"
    path.write_text(
        f"name: s\nsamples_per_prompt: {SAMPLES}\nwarmup: 1\ndevice: cpu\nthreads: 1\n"
        f"sampling: {{temperature: 0.8, top_k: 50, max_new_tokens: 48, seed: 7}}\nprompts:\n{prompts}\n"
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


def _when_mid_run(samples: Path, act) -> int:
    """Poll (a bounded number of times) until some but not all samples are written, then ``act()``."""
    for _ in range(POLLS):
        done = _count_lines(samples)
        if 0 < done < TOTAL and act():
            return done
        if done >= TOTAL:
            break
        time.sleep(POLL_S)
    pytest.fail(f"never caught the run mid-way ({_count_lines(samples)} of {TOTAL} samples)")


def test_ray_run_on_two_nodes_with_a_worker_killed_equals_local(ray_cluster, suite, local_run, tmp_path):
    out = tmp_path / "ray"
    driver = subprocess.Popen(
        harness_cmd(suite, "--models", MODELS, "--out", out, "--executor", "ray", "--ray-address", ray_cluster),
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
        done_at_kill = _when_mid_run(out / "samples.jsonl", kill_a_worker)
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


@pytest.mark.parametrize("resume_with", ["local", "ray"])
def test_driver_killed_mid_run_resumes_to_the_local_run(ray_cluster, suite, local_run, tmp_path, resume_with):
    out = tmp_path / "ray"
    driver = subprocess.Popen(
        harness_cmd(suite, "--models", MODELS, "--out", out, "--executor", "ray", "--ray-address", ray_cluster),
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _when_mid_run(out / "samples.jsonl", lambda: driver.send_signal(signal.SIGKILL) or True)
    finally:
        driver.kill()
        driver.wait()
    assert json.loads((out / "manifest.json").read_text())["status"] == "running"  # killed: no chance to say more
    extra = ["--executor", "ray", "--ray-address", ray_cluster] if resume_with == "ray" else []
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
