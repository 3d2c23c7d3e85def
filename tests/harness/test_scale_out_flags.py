"""Timing honesty across machines, and ``--executor ray`` without the extra; real runs, no Ray needed.

A run whose model's samples came from two kinds of hardware cannot be made on this one machine, so the
test makes a real run and then gives half of one model's samples the node record another machine would
have written (the ``node`` field is all the readers look at): summary, terminal table, report and gate
must warn, and a run from one machine must not.
"""

from __future__ import annotations

import json
import os
import sys

import pytest

from harness.records import load_run
from harness.summary import summarize
from harness.terminal_table import summary_table
from tests.harness.test_runner import harness, write_suite

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("mixed")
    suite = write_suite(root, n_prompts=2, samples=2, max_new=8)
    out = root / "run"
    harness("run", suite, "--models", "2.5m,5m", "--out", out, "--no-progress", "--no-report", check=0)
    return out


def _mixed_copy(run_dir, tmp_path):
    """The run, with half of 5m's samples recorded as made on a machine with another CPU and a GPU."""
    out = tmp_path / "mixed"
    out.mkdir()
    for name in ("manifest.json", "metrics.json", "model_metrics.jsonl", "summary.json", "summary.csv"):
        (out / name).write_bytes((run_dir / name).read_bytes())
    lines = [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()]
    other = [r for r in lines if r["model"] == "5m"][:2]
    for record in other:
        record["node"] = {"host": "gpu-node-7", "cpu": "Other CPU 9000", "gpu": "Some GPU 80GB"}
    (out / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    return out


def test_every_sample_records_its_node(run_dir):
    for record in load_run(run_dir).samples:
        assert set(record["node"]) == {"host", "cpu", "gpu"} and record["node"]["cpu"]
    assert load_run(run_dir).hardware_flags() == {}  # one machine: nothing to warn about
    assert json.loads((run_dir / "summary.json").read_text())["hardware_flags"] == {}


def test_mixed_hardware_is_flagged_in_summary_table_report_and_gate(run_dir, tmp_path):
    mixed = _mixed_copy(run_dir, tmp_path)
    flags = load_run(mixed).hardware_flags()
    assert list(flags) == ["5m"] and flags["5m"]["flag"] == "mixed hardware"
    assert "Other CPU 9000 + Some GPU 80GB (2 samples)" in flags["5m"]["reason"]
    summary = summarize(load_run(mixed))
    assert list(summary["hardware_flags"]) == ["5m"]
    table = summary_table(summary)
    assert "different kinds of hardware: 5m" in str(table.caption)
    report = harness("report", mixed, "-o", tmp_path / "r.html")
    assert report.returncode == 0, report.stderr
    html = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert "⚠ mixed hardware" in html and "Timing samples from different kinds of hardware: 5m" in html
    gate = harness("gate", mixed, "--baseline", run_dir, "--format", "markdown")
    assert gate.returncode in (0, 1, 3), gate.stderr
    assert "candidate timing of 5m mixes different kinds of hardware" in gate.stdout
    assert "timing of 2.5m mixes" not in gate.stdout


def test_executor_ray_without_the_extra_names_it(tmp_path):
    """With Ray not importable (a stand-in package that fails to import), one line names the extra."""
    blocker = tmp_path / "blocker" / "ray"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('No module named ray')\n")
    suite = write_suite(tmp_path, n_prompts=1, samples=1, max_new=4)
    env = {"PYTHONPATH": os.pathsep.join([str(blocker.parent), *sys.path])}
    result = harness("run", suite, "--models", "2.5m", "--out", tmp_path / "never", "--executor", "ray", env=env)
    assert result.returncode == 2, result.stdout + result.stderr
    assert (
        result.stderr.strip() == "error: --executor ray needs Ray, an optional extra: pip install 'tinylm-harness[ray]'"
    )
    assert not (tmp_path / "never").exists()
