"""A real Ray cluster on 127.0.0.1 for tests: a head node and worker nodes, one CPU each, started with
``ray start`` and always stopped (``ray stop --force``, then any process of its own temp dir still alive).

Two clusters never overlap in time: each test module holds at most one, and a module's cluster is
stopped before the next module starts (so the broad ``ray stop`` cannot hit another test's cluster).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from tests.ceilings import HANG_S

RAY = Path(sys.executable).parent / "ray"
ENV = {
    **os.environ,
    "HF_HUB_OFFLINE": "1",
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_DISABLE_DOCKER_CPU_WARNING": "1",
    # A cluster of its own token: no other Ray on this machine can join it, and its nodes and driver agree.
    "RAY_AUTH_MODE": "token",
    "RAY_AUTH_TOKEN": secrets.token_hex(32),
}
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


@contextlib.contextmanager
def ray_cluster_on_loopback(env: dict[str, str] | None = None) -> Iterator[tuple[str, list[int]]]:
    """A head and a worker node on 127.0.0.1 (one CPU each): yields the GCS address and the worker
    node's node-manager port (which names its raylet on the command line)."""
    env = {**ENV, **(env or {})}
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
            started = subprocess.run(command, env=env, timeout=HANG_S, capture_output=True, text=True)
            assert started.returncode == 0, started.stdout[-2000:] + started.stderr[-2000:]
        _wait_for_nodes(address, 2)
        yield address, ports[6]
    finally:
        subprocess.run([str(RAY), "stop", "--force"], env=env, timeout=HANG_S, capture_output=True)
        for pid in _processes_under(temp):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(temp, ignore_errors=True)
