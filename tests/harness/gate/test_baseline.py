"""baseline.json: round trip, compactness, and errors for malformed files."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from harness.errors import UserError
from harness.gate.baseline import FORMAT, load_baseline, write_baseline
from harness.gate.data import load_side
from harness.gate.engine import run_gate


def test_round_trip_keeps_every_value(kit: SimpleNamespace) -> None:
    values = {"a": kit.values(30, seed=1), "b": kit.values(30, seed=2)}
    values["a"]["perplexity"][3] = None
    run = kit.run("base", values, model_values={"a": {"heldout_bpb": 1.25}, "b": {"heldout_bpb": None}})
    side = load_side([run], "baseline")
    path = kit.tmp / "baseline.json"
    data = write_baseline(side, path)
    loaded = load_baseline(path)
    assert (
        data["format"] == FORMAT and data["suite"]["sha256"] == "a" * 64 and data["suite"]["prompts_sha256"] == "b" * 64
    )
    assert data["models"]["a"]["weights_sha256"] == "w" * 64
    assert data["metrics"]["tps"] == {"unit": "tokens/s", "higher_is_better": True, "kind": "timing", "level": "sample"}
    assert loaded.suite == side.suite and loaded.metrics == side.metrics and loaded.models == side.models
    assert loaded.rounds[0].samples == side.rounds[0].samples  # floats survive exactly, None stays missing
    assert loaded.rounds[0].keys == side.rounds[0].keys
    assert loaded.rounds[0].model_values == {"a": {"heldout_bpb": 1.25}, "b": {"heldout_bpb": None}}
    assert loaded.environment == side.environment


def test_gating_against_the_file_equals_gating_against_the_run(kit: SimpleNamespace) -> None:
    base_values = {"m": kit.values(50, seed=1)}
    cand_values = {"m": kit.values(50, seed=2)}
    base, cand = kit.run("base", base_values), kit.run("cand", cand_values)
    path = kit.tmp / "baseline.json"
    write_baseline(load_side([base], "b"), path)
    from_run = run_gate(load_side([base], "b"), load_side([cand], "c"))
    from_file = run_gate(load_side([path], "b"), load_side([cand], "c"))
    assert [(c.metric, c.verdict, c.p_value, c.ci) for c in from_run.comparisons] == [
        (c.metric, c.verdict, c.p_value, c.ci) for c in from_file.comparisons
    ]
    assert run_gate(load_side([path], "b"), load_side([base], "c")).exit_code == 0


def test_file_is_one_sample_per_line(kit: SimpleNamespace) -> None:
    run = kit.run("base", {"m": kit.values(25, seed=1)})
    path = kit.tmp / "baseline.json"
    write_baseline(load_side([run], "b"), path)
    lines = path.read_text().splitlines()
    assert sum(1 for line in lines if line.strip().startswith('["p0')) == 25
    assert json.loads(path.read_text())["rounds"][0]["models"]["m"]["columns"][:2] == ["prompt_id", "sample_index"]


def test_subset_export_and_rounds(kit: SimpleNamespace) -> None:
    runs = [kit.run(f"r{i}", {"a": kit.values(10, seed=i), "b": kit.values(10, seed=9)}) for i in range(3)]
    path = kit.tmp / "baseline.json"
    data = write_baseline(load_side(runs, "b"), path, models=["a"], metrics=["tps", "perplexity"])
    assert list(data["models"]) == ["a"] and list(data["metrics"]) == ["tps", "perplexity"]
    assert len(data["rounds"]) == 3 and data["rounds"][0]["models"]["a"]["columns"] == [
        "prompt_id",
        "sample_index",
        "tps",
        "perplexity",
    ]
    with pytest.raises(UserError, match="no model 'c'"):
        write_baseline(load_side(runs, "b"), path, models=["c"])


def test_rounds_of_different_suites_are_rejected(kit: SimpleNamespace) -> None:
    values = {"m": kit.values(10, seed=1)}
    with pytest.raises(UserError, match="ran different suites"):
        load_side([kit.run("a", values), kit.run("b", values, suite_sha="f" * 64)], "baseline")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "invalid JSON at line 1"),
        ("[]", "top level is not an object"),
        ('{"format": "other"}', "not a harness baseline file"),
        ('{"format": "tinylm-harness-baseline", "format_version": 9}', "format_version 9 is not supported"),
        (
            '{"format": "tinylm-harness-baseline", "format_version": 1, "suite": {"name": "s", "sha256": "a"},'
            ' "models": {}, "metrics": {}}',
            "field rounds: field required",
        ),
        (
            '{"format": "tinylm-harness-baseline", "format_version": 1, "suite": {"name": "s", "sha256": "a"},'
            ' "models": {"m": {}}, "metrics": {}, "rounds": [{"run_id": "r", "models": {"m": {"status": "ok",'
            ' "columns": ["prompt_id", "sample_index", "x"], "rows": [["p", 0]]}}}]}',
            "rows\\[0\\] has 2 values for 3 columns",
        ),
    ],
)
def test_malformed_files_name_the_problem(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "baseline.json"
    path.write_text(content)
    with pytest.raises(UserError, match=message):
        load_baseline(path)
