"""``--models @FILE`` and globs over checkpoint directories, with the local executor and real checkpoints."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from harness.errors import UserError
from harness.model_list import expand_model_specs, natural_key
from tests.harness.test_runner import harness, write_suite

CHECKPOINTS = Path(__file__).resolve().parents[2] / "tinylm_ref" / "checkpoints"


@pytest.fixture
def sweep(tmp_path) -> Path:
    """A checkpoint sweep as training leaves it: step-2, step-10 (out of lexical order), and a non-match."""
    root = tmp_path / "ckpts"
    for name, source in (("step-10", "5m"), ("step-2", "2.5m")):
        shutil.copytree(CHECKPOINTS / source, root / name)
    (root / "notes.txt").write_text("not a checkpoint")
    return root


def test_glob_is_expanded_in_natural_order_and_keeps_the_backend_prefix(sweep, monkeypatch):
    monkeypatch.chdir(sweep.parent)
    assert expand_model_specs("ckpts/step-*") == ["ckpts/step-2", "ckpts/step-10"]
    assert expand_model_specs("tinylm:ckpts/step-*,2.5m") == ["tinylm:ckpts/step-2", "tinylm:ckpts/step-10", "2.5m"]


def test_list_file_skips_comments_and_blank_lines(tmp_path, sweep, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models.txt").write_text("# the sweep\n\nckpts/step-*   # every step\n2.5m\n")
    assert expand_model_specs("@models.txt") == ["ckpts/step-2", "ckpts/step-10", "2.5m"]


@pytest.mark.parametrize(
    ("text", "files", "message"),
    [
        ("nothing/step-*", {}, "--models: 'nothing/step-*' matches no path"),
        ("@absent.txt", {}, "--models @absent.txt: no such file"),
        ("@empty.txt", {"empty.txt": "# nothing\n\n"}, "--models @empty.txt: lists no model spec"),
        ("@dup.txt,2.5m", {"dup.txt": "2.5m\n"}, "model '2.5m' is listed twice"),
        ("@bad.txt", {"bad.txt": b"\xff\xfe"}, "--models @bad.txt: cannot read (not UTF-8 text)"),
    ],
)
def test_mistakes_are_one_line_naming_what_to_fix(tmp_path, monkeypatch, text, files, message):
    monkeypatch.chdir(tmp_path)
    for name, content in files.items():
        (tmp_path / name).write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(UserError) as caught:
        expand_model_specs(text)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_natural_key_orders_numbers_by_value():
    assert sorted(["s-10", "s-9", "s-100", "s-1"], key=natural_key) == ["s-1", "s-9", "s-10", "s-100"]


@pytest.mark.slow
def test_a_sweep_is_one_command(tmp_path, sweep):
    """A real run over a glob and a list file: every checkpoint runs, in training order, under its spec."""
    suite = write_suite(tmp_path, n_prompts=1, samples=1, max_new=4)
    (tmp_path / "models.txt").write_text("ckpts/step-*\n")
    result = harness(
        "run", suite, "--models", "@models.txt", "--out", "out", "--no-progress", "--no-report", cwd=tmp_path
    )
    assert result.returncode == 0, result.stdout + result.stderr
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert [m["name"] for m in manifest["models"]] == ["ckpts/step-2", "ckpts/step-10"]
    assert [m["status"] for m in manifest["models"]] == ["ok", "ok"]
    params = [m["info"]["parameters"] for m in manifest["models"]]
    assert params[0] < params[1]  # step-2 is the 2.5m copy, step-10 the 5m one: each loaded its own weights
