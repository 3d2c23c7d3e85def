"""benchmarks/serve_soak.py runs end to end with tiny settings against a real harness serve (no timing asserts)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.ceilings import HANG_S

ROOT = Path(__file__).resolve().parents[2]

pytest.importorskip("uvicorn")
pytest.importorskip("httpx_sse")


def test_serve_soak_counts_every_request_and_reports_each_level(tmp_path):
    out = tmp_path / "soak.json"
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "serve_soak.py"),
            *("--requests", "12", "--concurrency", "1,4", "--max-tokens", "6", "--json", str(out)),
        ],
        capture_output=True,
        text=True,
        timeout=HANG_S,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    levels = json.loads(out.read_text())["levels"]
    assert [level["concurrency"] for level in levels] == [1, 4]
    for level in levels:
        assert (level["ok"], level["lost"], level["malformed"]) == (12, 0, 0)
        assert level["ttft_p50_ms"] <= level["ttft_p99_ms"] and level["itl_p50_ms"] <= level["itl_p99_ms"]
        assert level["server_rss_mb"]["peak"] >= level["server_rss_mb"]["start"] > 0
