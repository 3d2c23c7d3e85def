"""``harness gate`` / ``harness baseline export`` through Typer: every exit code and every output format."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from harness.errors import UserError
from harness.gate.commands import add_commands
from harness.gate.report import MARKDOWN_MARKER
from tests.ceilings import HANG_S
from tests.harness.cli_result import invoke as invoke_mapped

runner = CliRunner()


def make_app() -> typer.Typer:
    """Stand-in for the lead's main app: the gate package only contributes add_commands."""
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """harness"""

    add_commands(app)
    return app


def invoke(*args: str | Path):  # noqa: ANN201 - click Result
    return invoke_mapped(make_app(), list(args))


@pytest.fixture
def dirs(kit: SimpleNamespace) -> SimpleNamespace:
    """A baseline and candidates that pass, regress, or are inconclusive (single-round timing)."""
    base = kit.values(60, seed=1)
    rng = np.random.default_rng(2)
    worse = {**base, "perplexity": [v * 1.15 * rng.lognormal(-0.00125, 0.05) for v in base["perplexity"]]}
    slow = {**base, "tps": [v * 0.7 for v in base["tps"]]}
    return SimpleNamespace(
        base=kit.run("base", {"m": base, "n": base}),
        same=kit.run("same", {"m": base, "n": base}),
        worse=kit.run("worse", {"m": worse, "n": base}),
        slow=kit.run("slow", {"m": slow, "n": base}),
        other_suite=kit.run("other", {"m": base, "n": base}, suite_sha="e" * 64),
        tmp=kit.tmp,
    )


def test_exit_0_on_pass(dirs: SimpleNamespace) -> None:
    result = invoke("gate", dirs.same, "--baseline", dirs.base)
    assert result.exit_code == 0, result.output
    assert "gate passed" in result.stdout and "perplexity" in result.stdout


def test_exit_1_on_regression(dirs: SimpleNamespace) -> None:
    result = invoke("gate", dirs.worse, "--baseline", dirs.base)
    assert result.exit_code == 1
    assert "gate FAILED: 1 regression(s): perplexity/m" in result.stdout


@pytest.mark.parametrize(
    "case", ["suite", "not_a_run", "bad_rules", "missing_baseline_option", "rounds", "bad_baseline_file"]
)
def test_exit_2_on_input_errors_with_one_line(dirs: SimpleNamespace, case: str) -> None:
    rules = dirs.tmp / "bad.yaml"
    rules.write_text("metrics:\n  perplexity: {alpha: 5}\n")
    broken = dirs.tmp / "broken.json"
    broken.write_text("{}")
    args = {
        "suite": ["gate", dirs.other_suite, "--baseline", dirs.base],
        "not_a_run": ["gate", dirs.tmp / "nowhere", "--baseline", dirs.base],
        "bad_rules": ["gate", dirs.same, "--baseline", dirs.base, "--rules", rules],
        "missing_baseline_option": ["gate", dirs.same],
        "rounds": ["gate", dirs.same, "--baseline", dirs.base, "--rounds", "5"],
        "bad_baseline_file": ["gate", dirs.same, "--baseline", broken],
    }[case]
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    if case != "missing_baseline_option":  # that one is Typer's own usage error
        assert result.stderr.startswith("error: ") and len(result.stderr.strip().splitlines()) == 1
    if case == "suite":
        assert "suite mismatch" in result.stderr
    if case == "bad_rules":
        assert "bad.yaml: metrics.perplexity.alpha" in result.stderr


def test_exit_3_only_when_asked(dirs: SimpleNamespace) -> None:
    assert invoke("gate", dirs.slow, "--baseline", dirs.base).exit_code == 0
    result = invoke("gate", dirs.slow, "--baseline", dirs.base, "--fail-on-inconclusive")
    assert result.exit_code == 3 and "gate inconclusive" in result.stdout


def test_regression_beats_inconclusive(dirs: SimpleNamespace, kit: SimpleNamespace) -> None:
    base = kit.values(60, seed=1)
    both = {**base, "tps": [v * 0.7 for v in base["tps"]], "perplexity": [v * 1.5 for v in base["perplexity"]]}
    run = kit.run("both", {"m": both, "n": base})
    assert invoke("gate", run, "--baseline", dirs.base, "--fail-on-inconclusive").exit_code == 1


def test_json_output(dirs: SimpleNamespace) -> None:
    path = dirs.tmp / "out" / "gate.json"
    result = invoke("gate", dirs.worse, "--baseline", dirs.base, "--json", path, "--format", "json")
    assert result.exit_code == 1
    data = json.loads(path.read_text())
    assert json.loads(result.stdout) == data
    assert data["format"] == "tinylm-harness-gate" and data["status"] == "regression" and data["exit_code"] == 1
    assert data["suite"]["sha256"] == "a" * 64
    rows = {(r["metric"], r["model"]): r for r in data["results"]}
    assert len(rows) == len(data["results"]) == 10  # 5 metrics × 2 models
    bad = rows[("perplexity", "m")]
    assert bad["verdict"] == "regression" and bad["test"] == "wilcoxon" and bad["direction"] == "lower"
    assert bad["p_value"] <= bad["p_adjusted"] <= bad["alpha"] and bad["ci"]["rel_low"] < bad["rel_change"]
    required = {
        "baseline_mean",
        "candidate_mean",
        "change",
        "rel_change",
        "ci",
        "p_value",
        "p_adjusted",
        "alpha_step",
        "tolerance",
        "gated",
        "verdict",
        "reason",
        "n_baseline",
        "n_candidate",
        "missing_candidate",
    }
    assert all(required <= set(r) for r in data["results"])


def test_junit_output(dirs: SimpleNamespace) -> None:
    path = dirs.tmp / "gate.xml"
    assert invoke("gate", dirs.worse, "--baseline", dirs.base, "--junit", path, "--format", "none").exit_code == 1
    root = ET.parse(path).getroot()
    assert root.tag == "testsuites" and root.get("failures") == "1" and root.get("tests") == "10"
    cases = root.findall("./testsuite/testcase")
    assert len(cases) == 10 and {(c.get("classname"), c.get("name")) for c in cases} >= {("gate.m", "perplexity")}
    failed = [c for c in cases if c.find("failure") is not None]
    assert [(c.get("classname"), c.get("name")) for c in failed] == [("gate.m", "perplexity")]
    failure = failed[0].find("failure")
    for needle in ("change +", "CI [", "p ", "adjusted alpha"):
        assert needle in failure.get("message")
    assert "Holm-adjusted p" in failure.text and "tolerance" in failure.text


def test_junit_marks_inconclusive_as_skipped(dirs: SimpleNamespace) -> None:
    result = invoke("gate", dirs.slow, "--baseline", dirs.base, "--format", "junit")
    root = ET.fromstring(result.stdout.split("\n", 1)[1])
    skipped = [c for c in root.iter("testcase") if c.find("skipped") is not None]
    assert [(c.get("classname"), c.get("name")) for c in skipped] == [("gate.m", "tps")]
    assert root.get("skipped") == "1" and root.get("failures") == "0"
    assert "inconclusive" in skipped[0].find("skipped").get("message")


def test_markdown_output(dirs: SimpleNamespace) -> None:
    path = dirs.tmp / "summary.md"
    assert invoke("gate", dirs.worse, "--baseline", dirs.base, "--markdown", path, "--format", "none").exit_code == 1
    text = path.read_text()
    assert text.startswith(MARKDOWN_MARKER) and "### ❌ gate FAILED" in text
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    header, body = rows[0], rows[1:]
    assert header.split("|")[1].strip() == "verdict" and len(body) == 10
    first = [cell.strip() for cell in body[0].strip("|").split("|")]
    assert first[:3] == ["❌ regression", "perplexity", "m"]  # worst first
    assert first[5].startswith("+") and first[5].endswith("%")
    assert all(len(r.strip("|").split("|")) == len(header.strip("|").split("|")) for r in body)


def test_table_output_lists_columns(dirs: SimpleNamespace) -> None:
    result = invoke("gate", dirs.worse, "--baseline", dirs.base)
    for column in ("metric", "model", "baseline", "candidate", "change", "95% CI", "p (Holm)", "verdict"):
        assert column in result.stdout
    assert "regression" in result.stdout


def test_baseline_export_then_gate(dirs: SimpleNamespace) -> None:
    path = dirs.tmp / "ci" / "baseline.json"
    path.parent.mkdir()
    result = invoke("baseline", "export", dirs.base, "-o", path)
    assert result.exit_code == 0 and "wrote" in result.stdout and "2 model(s)" in result.stdout
    assert invoke("gate", dirs.same, "--baseline", path).exit_code == 0
    assert invoke("gate", dirs.worse, "--baseline", path).exit_code == 1
    assert invoke("gate", dirs.other_suite, "--baseline", path).exit_code == 2
    bad = invoke("baseline", "export", dirs.tmp / "nowhere", "-o", path)
    assert bad.exit_code == 2 and bad.stderr.startswith("error: ")


def test_rounds_from_a_directory_of_runs(kit: SimpleNamespace) -> None:
    for side, factor in (("base", 1.0), ("cand", 0.8)):
        rng = np.random.default_rng(7 if side == "base" else 8)
        for r in range(5):
            values = kit.values(40, seed=r, run_shift=float(rng.normal(0, 0.02)), scale={"tps": factor})
            kit.run(f"{side}/round-{r}", {"m": values})
    result = invoke("gate", kit.tmp / "cand", "--baseline", kit.tmp / "base", "--rounds", "5", "--metric", "tps")
    assert result.exit_code == 1 and "tps/m" in result.stdout
    assert invoke("gate", kit.tmp / "cand", "--baseline", kit.tmp / "base", "--rounds", "3").exit_code == 2


def test_exit_codes_survive_standalone_mode_false(dirs: SimpleNamespace) -> None:
    """The main CLI calls ``app(standalone_mode=False)``, which swallows typer.Exit: codes must still reach the OS."""
    for candidate, code in ((dirs.same, 0), (dirs.worse, 1)):
        with pytest.raises(SystemExit) as info:
            make_app()(
                ["gate", str(candidate), "--baseline", str(dirs.base), "--format", "none"], standalone_mode=False
            )
        assert info.value.code == code
    # input errors are raised for harness.cli.main to map (one error path), never swallowed as a pass
    with pytest.raises(UserError, match="suite mismatch"):
        make_app()(["gate", str(dirs.other_suite), "--baseline", str(dirs.base)], standalone_mode=False)


def test_real_entry_point(dirs: SimpleNamespace) -> None:
    """``python -m harness gate`` through the main CLI, when it is wired (harness.cli calls add_commands)."""
    import subprocess
    import sys

    pytest.importorskip("harness.cli")
    proc = subprocess.run(
        [sys.executable, "-m", "harness", "gate", str(dirs.worse), "--baseline", str(dirs.base), "--format", "none"],
        capture_output=True,
        text=True,
        timeout=HANG_S,
    )
    assert proc.returncode == 1, proc.stderr  # one process start is slow enough; the other codes are covered above
    assert "Traceback" not in proc.stderr
