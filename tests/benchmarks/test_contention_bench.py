"""benchmarks/contention.py runs end to end with the tiniest settings and leaves no worker behind (no timing asserts)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.ceilings import HANG_S

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SIGSTOP/SIGCONT competitors and /proc")
def test_contention_benchmark_reports_every_preset_policy_and_level(tmp_path):
    out = tmp_path / "contention.json"
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "contention.py"),
            *("--presets", "2.5m", "--tokens", "6", "--rounds", "1", "--policies", "threads1"),
            *("--policy", "passive1=OMP_WAIT_POLICY=PASSIVE,threads=1", "--json", str(out)),
        ],
        capture_output=True,
        text=True,
        timeout=HANG_S,
        cwd=tmp_path,  # nothing is written into the repository (no --save)
    )
    assert result.returncode == 0, result.stdout + result.stderr
    data = json.loads(out.read_text())
    rows = {(r["preset"], r["policy"]): r for r in data["rows"]}
    assert set(rows) == {("2.5m", "threads1"), ("2.5m", "passive1")}
    for row in rows.values():
        for key in ("idle_tps", "one_tps", "two_tps", "one_share", "two_share"):
            assert row[key] > 0, (row["policy"], key)
        assert row["threads"] == 1
        assert set(row["probe"]) == {"0", "1", "2"}
        for record in row["probe"].values():
            assert record["process_cpu_s"] > 0 and isinstance(record["contended"], bool) and record["reason"]
        for pid in row["worker_pids"]:  # every measuring and competing process is gone
            cmdline = Path(f"/proc/{pid}/cmdline")
            assert not cmdline.exists() or b"--worker" not in cmdline.read_bytes()
    assert rows[("2.5m", "passive1")]["omp_env"] == {"OMP_WAIT_POLICY": "PASSIVE"}
    assert rows[("2.5m", "threads1")]["omp_env"] == {}
    assert data["environment"]["cpu"] and data["environment"]["openmp"]
    assert "+1 copy" in result.stdout and "2.5m   threads1" in result.stdout
