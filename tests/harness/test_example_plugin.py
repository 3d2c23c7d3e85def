"""The worked example package, pip-installed for real, shows up in a run end to end."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness.records import load_run
from tests.ceilings import HANG_S

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "harness-metric-example"


@pytest.fixture(scope="module")
def installed_example(tmp_path_factory):
    """pip-install the example into a private target directory (entry points included), offline.

    pip builds from a private copy: built in place, setuptools writes build/ and *.egg-info into the source
    directory, which would put files in the checkout and race a second copy of the suite doing the same.
    """
    target = tmp_path_factory.mktemp("site")
    source = tmp_path_factory.mktemp("example") / EXAMPLE.name
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--target",
            str(target),
            str(source),
        ],
        check=True,
        capture_output=True,
        timeout=HANG_S,
    )
    assert list(target.glob("harness_metric_example-*.dist-info"))
    return target


def test_word_diversity_formula():
    sys.path.insert(0, str(EXAMPLE))
    try:
        from harness_metric_example import word_diversity
    finally:
        sys.path.remove(str(EXAMPLE))
    assert word_diversity("The dog and the cat.") == 4 / 5
    assert word_diversity("...") is None


def test_example_plugin_end_to_end(installed_example, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(installed_example), "HF_HUB_OFFLINE": "1"}
    listing = subprocess.run(
        [sys.executable, "-m", "harness", "plugins"], capture_output=True, text=True, env=env, timeout=HANG_S
    )
    assert "word_diversity" in listing.stdout and "0.2.0" in listing.stdout
    suite = tmp_path / "s.yaml"
    suite.write_text(
        "name: s\nwarmup: 0\nsampling: {max_new_tokens: 24, seed: 3}\nprompts:\n"
        "  - {id: a, text: Once upon a time}\n  - {id: b, text: Tom said}\n"
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "harness",
            "run",
            str(suite),
            "--models",
            "tinylm:random/2.5m",
            "--out",
            str(tmp_path / "run"),
            "--no-report",
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=HANG_S,
    )
    assert result.returncode == 0, result.stderr
    assert "word_diversity" in result.stdout  # the terminal table
    run = load_run(tmp_path / "run")
    assert all("word_diversity" in r["metrics"] for r in run.samples)
    assert run.metrics["word_diversity"]["plugin"] == "word_diversity"
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["metrics"]["word_diversity"]["models"]["tinylm:random/2.5m"]["n"] == 2
    assert "word_diversity" in (tmp_path / "run" / "summary.csv").read_text()
