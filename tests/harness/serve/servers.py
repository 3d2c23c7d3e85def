"""Real servers on loopback for the serving tests: started as processes on a free port, always stopped."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from tests.ceilings import HANG_S

HERE = Path(__file__).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_ready(proc: subprocess.Popen, url: str) -> None:
    """Until ``url`` answers 200 (the server is up), or the process died (its output is the failure)."""
    import httpx

    deadline = time.monotonic() + HANG_S  # a hang ceiling, not a speed claim
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"server exited with {proc.returncode}:\n{out}\n{err}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=5).status_code == 200:
                return
        time.sleep(0.1)
    raise AssertionError(f"server at {url} not ready within the hang ceiling")


@contextlib.contextmanager
def running(args: list[str], port: int, ready_path: str = "/health") -> Iterator[subprocess.Popen]:
    """Start ``python ARGS`` and stop it on the way out, whatever happened."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        wait_ready(proc, f"http://127.0.0.1:{port}{ready_path}")
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=HANG_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=HANG_S)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def harness_serve(spec: str | Path, port: int, *extra: str):
    """``harness serve SPEC`` on 127.0.0.1:PORT."""
    return running(["-m", "harness", "serve", str(spec), "--port", str(port), "--threads", "1", *extra], port)


def fault_server(mode: str, port: int, tokenizer: Path):
    """tests/harness/serve/fault_server.py in MODE (see there)."""
    return running([str(HERE / "fault_server.py"), mode, str(port), str(tokenizer)], port)
