"""The everyday loop through the real CLIs: suites by name, quick runs, resumes, model mapping, scriptable output.

Every test drives ``python -m harness`` / ``tinylm`` in a scratch directory (not the checkout), as a user of
a pip-installed harness would, on the bundled 2.5m and 10m checkpoints.
"""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from harness.records import load_run
from harness.suite import load_suite
from harness.suite_catalog import bundled_suites
from tests.ceilings import HANG_S
from tests.harness.test_runner import harness
from tinylm_ref.bundled import bundled_checkpoints

QUICK = ("--limit", "1", "--samples-per-prompt", "1", "--no-progress")


def tinylm(*args: str, check: int | None = 0) -> subprocess.CompletedProcess:
    code = "import sys; from tinylm_ref.cli import main; sys.argv[0] = 'tinylm'; main()"
    result = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=HANG_S, cwd=Path("/")
    )
    if check is not None:
        assert result.returncode == check, result.stdout + result.stderr
    return result


@pytest.fixture(scope="module")
def quick_runs(tmp_path_factory):
    """Three runs of the bundled smoke suite, named (not a path), from a scratch directory:
    ``partial``: --limit 1 (4 of 8 prompts); ``full``: --limit 2 (every smoke prompt, so not partial), on 2.5m and
    10m; ``renamed``: the same 2.5m weights under another spec (its checkpoint path)."""
    root = tmp_path_factory.mktemp("workflow")
    runs = {"partial": root / "partial", "full": root / "full", "renamed": root / "renamed"}
    harness("run", "smoke", "--models", "2.5m", *QUICK, "--out", runs["partial"], check=0)
    full = ("--limit", "2", "--samples-per-prompt", "1", "--no-progress")
    harness("run", "smoke", "--models", "2.5m,10m", *full, "--out", runs["full"], check=0)
    renamed = bundled_checkpoints()["2.5m"]
    harness("run", "smoke", "--models", renamed, *full, "--out", runs["renamed"], check=0)
    return runs


def test_suites_are_found_by_name_and_listed(quick_runs):
    listed = json.loads(harness("suites", "list", "--json", check=0).stdout)
    assert {row["name"] for row in listed} == set(bundled_suites()) >= {"smoke", "tinystories"}
    for row in listed:
        loaded = load_suite(row["path"])
        assert row["prompts"] == len(loaded.prompts)
        assert sum(row["categories"].values()) == row["prompts"]
        assert row["samples_per_prompt"] == loaded.suite.samples_per_prompt
    run = load_run(quick_runs["partial"])
    assert run.manifest.suite.name == "smoke" and run.manifest.status == "complete"
    table = harness("suites", "list", check=0).stdout
    assert "tinystories" in table and "story_opening 25" in table


def test_an_unknown_suite_name_is_one_line_listing_the_bundled_ones():
    result = harness("run", "smok", "--models", "2.5m", check=2)
    assert result.stderr.count("\n") == 1
    assert "did you mean 'smoke'" in result.stderr and "tinystories" in result.stderr


def test_limit_seed_and_samples_are_recorded_and_change_the_suite_identity(quick_runs):
    partial, full = load_run(quick_runs["partial"]).manifest.suite, load_run(quick_runs["full"]).manifest.suite
    assert partial.overrides == {"limit": 1, "samples_per_prompt": 1} and partial.partial is True
    assert partial.n_prompts == 4 and {p.category for p in partial.definition.prompts} == {
        "story_opening",
        "character_intro",
        "action",
        "dialogue",
    }
    assert full.n_prompts == 8 and full.partial is False  # a limit that drops nothing is the whole suite
    assert partial.sha256 != full.sha256 != load_suite(bundled_suites()["smoke"]).sha256  # 1 sample, not 2


def test_a_seed_override_changes_the_tokens_and_the_hash(quick_runs, tmp_path):
    out = tmp_path / "seeded"
    harness("run", "smoke", "--models", "2.5m", *QUICK, "--seed", "99", "--out", out, check=0)
    seeded, partial = load_run(out), load_run(quick_runs["partial"])
    assert seeded.manifest.suite.sampling["seed"] == 99 and seeded.manifest.suite.overrides["seed"] == 99
    assert seeded.suite_sha256 != partial.suite_sha256
    assert [s["output_ids"] for s in seeded.samples] != [s["output_ids"] for s in partial.samples]


def test_a_partial_run_is_refused_as_a_baseline(quick_runs, tmp_path):
    gate = harness("gate", quick_runs["full"], "--baseline", quick_runs["partial"], check=2)
    assert "partial run (--limit 1" in gate.stderr and "without --limit" in gate.stderr
    export = harness("baseline", "export", quick_runs["partial"], "-o", tmp_path / "b.json", check=2)
    assert "partial run" in export.stderr and not (tmp_path / "b.json").exists()


def test_resume_needs_only_the_directory(quick_runs, tmp_path):
    """A run whose last samples were lost finishes from its manifest alone, with the same tokens."""
    import shutil

    run_dir = tmp_path / "resumed"
    shutil.copytree(quick_runs["partial"], run_dir)
    lines = (run_dir / "samples.jsonl").read_text().splitlines(keepends=True)
    (run_dir / "samples.jsonl").write_text("".join(lines[:2]))
    harness("run", "--resume", run_dir, "--no-progress", check=0)
    before = {(s["prompt_id"], s["sample_index"]): s["output_ids"] for s in load_run(quick_runs["partial"]).samples}
    after = {(s["prompt_id"], s["sample_index"]): s["output_ids"] for s in load_run(run_dir).samples}
    assert after == before and len(after) == 4
    conflict = harness("run", "--resume", run_dir, "--seed", "5", check=2)
    assert "was run with no --seed" in conflict.stderr
    other = harness("run", "tinystories", "--resume", run_dir, check=2)
    assert "different suite" in other.stderr


def test_gate_maps_differently_named_models(quick_runs):
    renamed = str(bundled_checkpoints()["2.5m"])
    unmapped = harness("gate", quick_runs["renamed"], "--baseline", quick_runs["full"], "--model", "2.5m", check=2)
    assert "candidate has no model '2.5m'" in unmapped.stderr
    mapped = harness(
        "gate",
        quick_runs["renamed"],
        "--baseline",
        quick_runs["full"],
        "--map",
        f"{renamed}=2.5m",
        "--model",
        renamed,
        "--format",
        "json",
    )
    assert mapped.returncode == 0, mapped.stderr
    result = json.loads(mapped.stdout)
    assert {c["model"] for c in result["results"]} == {renamed}  # reported under the candidate's name
    assert result["status"] != "regression" and any(c["metric"] == "perplexity" for c in result["results"])
    other_tokenizer = harness(
        "gate",
        quick_runs["renamed"],
        "--baseline",
        quick_runs["full"],
        "--map",
        f"{renamed}=10m",
        "--model",
        renamed,
        check=2,
    )
    assert "tokenizer_sha256" in other_tokenizer.stderr
    typo = harness("gate", quick_runs["renamed"], "--baseline", quick_runs["full"], "--map", "nope=2.5m", check=2)
    assert "the candidate has no model 'nope'" in typo.stderr


def test_version_and_json_outputs():
    installed = version("tinylm-harness")
    assert harness("--version", check=0).stdout.strip() == f"harness (tinylm-harness) {installed}"
    assert tinylm("--version").stdout.strip() == f"tinylm (tinylm-harness) {installed}"
    plugins = json.loads(harness("plugins", "--json", check=0).stdout)
    builtins = [p for p in plugins if p["origin"] == "builtin"]
    assert builtins and all(p["version"] == installed for p in builtins)
    models = json.loads(harness("models", "--json", check=0).stdout)
    assert {"backend": "tinylm", "spec": "2.5m"}.items() <= next(m for m in models if m["spec"] == "2.5m").items()
    info = json.loads(tinylm("info", "2.5m", "--json").stdout)
    assert [row["preset"] for row in info] == ["2.5m"] and info[0]["dim"] == 272


def test_tables_are_not_cut_when_piped():
    """Captured output is not a terminal: a row as long as every metric name of a plugin stays whole."""
    out = harness("plugins", check=0).stdout
    plugins = json.loads(harness("plugins", "--json", check=0).stdout)
    longest = max(plugins, key=lambda p: len(", ".join(p["registered"])))
    assert ", ".join(longest["registered"]) in out and "…" not in out


def test_progress_goes_to_stderr(tmp_path):
    result = harness(
        "run", "smoke", "--models", "2.5m", "--limit", "1", "--samples-per-prompt", "1", "--out", tmp_path / "r"
    )
    assert result.returncode == 0, result.stderr
    assert "4/4" in result.stderr and "4/4" not in result.stdout  # the bar: never mixed into the results
    assert "run directory:" in result.stdout


def test_tinylm_accepts_the_bundled_preset_names():
    result = tinylm("sample", "2.5m", "Once upon a time", "--max-new-tokens", "8", "--seed", "3")
    assert result.stdout.startswith("Once upon a time") and len(result.stdout.strip()) > len("Once upon a time")
    unknown = tinylm("info", "3m", check=2)
    assert "unknown preset '3m'" in unknown.stderr


def test_an_uncached_hub_model_offline_fails_before_any_directory(tmp_path):
    out = tmp_path / "never"
    result = harness(
        "run", "smoke", "--models", "2.5m,hf:someorg/not-cached", "--out", out, env={"HF_HOME": str(tmp_path / "hf")}
    )
    assert result.returncode == 2 and "is not in the Hugging Face cache" in result.stderr
    assert not out.exists()
