"""Random damage to a copy of a real run directory: every reader works or exits 2 with one line.

Hypothesis truncates, duplicates, deletes, retypes and reorders what ``harness run`` wrote, then
drives report, baseline export, gate (the damaged run as candidate and as baseline) and merge through
the real entry point. The property: a command either succeeds on a directory that still validates,
or exits 2 with exactly one ``error:`` line; never a traceback, never exit 1 (a "regression" that is
really damage), never a result computed from a directory that does not validate.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from harness.errors import UserError
from harness.records import load_run
from tests.harness.cli_result import run_main
from tests.harness.test_runner import harness, write_suite

FILES = ["manifest.json", "samples.jsonl", "model_metrics.jsonl", "metrics.json", "summary.json"]
OPERATIONS = ["truncate", "duplicate", "delete_line", "retype", "reorder", "delete_file"]
REPLACEMENTS = [None, "text", [], {}, 1e308, -1, True, 0, "NaN"]


@pytest.fixture(scope="module")
def shards(tmp_path_factory, tiny_checkpoint) -> dict[str, Path]:
    """Two shard runs of a real tiny model, their merge, and a baseline exported from the merge."""
    root = tmp_path_factory.mktemp("fuzz")
    suite = write_suite(root, n_prompts=3, samples=2, max_new=8)
    out = {}
    for k in (1, 2):
        out[f"shard{k}"] = root / f"shard{k}"
        harness(
            "run", suite, "--models", tiny_checkpoint, "--shard", f"{k}/2", "--out", out[f"shard{k}"],
            "--no-report", "--no-progress", check=0,
        )  # fmt: skip
    out["merged"] = root / "merged"
    harness("merge", out["shard1"], out["shard2"], "-o", out["merged"], check=0)
    out["baseline"] = root / "baseline.json"
    harness("baseline", "export", out["merged"], "-o", out["baseline"], check=0)
    for path in out.values():
        (path / ".lock").unlink(missing_ok=True) if path.is_dir() else None
    return out


def _retype(value: object, rng: random.Random) -> object:
    """Replace one leaf (or one key's value) somewhere in a JSON value."""
    if isinstance(value, dict) and value:
        key = rng.choice(sorted(value))
        if rng.random() < 0.4 or not isinstance(value[key], (dict, list)) or not value[key]:
            value[key] = rng.choice(REPLACEMENTS)
        else:
            value[key] = _retype(value[key], rng)
        return value
    if isinstance(value, list) and value:
        index = rng.randrange(len(value))
        value[index] = rng.choice(REPLACEMENTS) if rng.random() < 0.5 else _retype(value[index], rng)
        return value
    return rng.choice(REPLACEMENTS)


def _reorder(value: object, rng: random.Random) -> object:
    if isinstance(value, dict):
        keys = list(value)
        rng.shuffle(keys)
        return {k: _reorder(value[k], rng) for k in keys}
    return value


def damage(path: Path, name: str, operation: str, seed: int) -> None:
    rng = random.Random(seed)
    target = path / name
    if not target.exists():
        return
    text = target.read_text(encoding="utf-8")
    lines = text.splitlines(keepends=True)
    if operation == "delete_file":
        target.unlink()
    elif operation == "truncate":
        target.write_text(text[: rng.randrange(len(text) + 1)], encoding="utf-8")
    elif operation == "duplicate" and lines:
        lines.insert(rng.randrange(len(lines) + 1), rng.choice(lines))
        target.write_text("".join(lines), encoding="utf-8")
    elif operation == "delete_line" and lines:
        del lines[rng.randrange(len(lines))]
        target.write_text("".join(lines), encoding="utf-8")
    elif operation in ("retype", "reorder"):
        change = _retype if operation == "retype" else _reorder
        if name.endswith(".jsonl") and lines:
            index = rng.randrange(len(lines))
            lines[index] = json.dumps(change(json.loads(lines[index]), rng)) + "\n"
            target.write_text("".join(lines), encoding="utf-8")
        elif not name.endswith(".jsonl"):
            target.write_text(json.dumps(change(json.loads(text), rng)), encoding="utf-8")


def assert_works_or_one_line(result, allowed: tuple[int, ...], args) -> None:
    assert "Traceback" not in result.stderr, (args, result.stderr)
    if result.returncode == 2:
        errors = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(errors) == 1 and errors[0].startswith("error: "), (args, result.stderr)
    else:
        assert result.returncode in allowed, (args, result.returncode, result.stderr)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    name=st.sampled_from(FILES),
    operation=st.sampled_from(OPERATIONS),
    seed=st.integers(0, 2**16),
    which=st.sampled_from(["merged", "shard1"]),
)
def test_random_damage_is_handled_or_refused_in_one_line(shards, tmp_path_factory, name, operation, seed, which):
    work = tmp_path_factory.mktemp("damaged")
    damaged = work / which
    shutil.copytree(shards[which], damaged)
    damage(damaged, name, operation, seed)
    try:
        load_run(damaged)
        valid = True
    except UserError:
        valid = False
    event(f"{operation} {name}: {'still valid' if valid else 'refused'}")
    commands: list[tuple[tuple, tuple[int, ...]]] = [
        (("report", damaged, "-o", work / "r.html"), (0,)),
        (("baseline", "export", damaged, "-o", work / "b.json"), (0,)),
        (("gate", damaged, "--baseline", shards["baseline"], "--format", "none"), (0, 1, 3)),
        (("gate", shards["merged"], "--baseline", damaged, "--format", "none"), (0, 1, 3)),
    ]
    if which == "shard1":
        commands.append((("merge", damaged, shards["shard2"], "-o", work / "m"), (0,)))
    for args, allowed in commands:
        result = run_main(list(args))
        assert_works_or_one_line(result, allowed, args)
        if not valid:  # a directory that does not validate never yields a result
            assert result.returncode == 2, (args, result.returncode, result.stdout[-500:])
    if not valid:
        assert not (work / "r.html").exists() and not (work / "b.json").exists() and not (work / "m").exists()
