"""Inputs that cannot hurt (docs/reliability.md, "Inputs"): through the real CLI, every hostile or careless
input costs a bounded amount before it is refused, is refused in exactly one line with exit code 2, and
a refusal leaves no run directory behind. Rows refer to the issue's table."""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.harness.test_runner import harness

REPO = Path(__file__).resolve().parents[2]
BUNDLED = REPO / "tinylm_ref" / "checkpoints" / "2.5m"
#: Address space for the memory-budget tests: torch's import and a real 2.5m run fit in 1 GiB (with one
#: thread and two malloc arenas); the inputs below used 2.5 to 8 GB before they were bounded.
MEMORY_LIMIT = 2**30
#: Generous wall-clock ceiling (seconds) for a refusal on a shared, slow machine; the same inputs ran for
#: minutes before (141 s to validate a 50 MB prompt, > 120 s for an alias bomb).
TIME_CEILING = 90


def one_line(result: subprocess.CompletedProcess, *needles: str) -> str:
    """Exit 2 and exactly one line on stderr, starting with ``error:``, containing every needle."""
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def limited(*args: object, cwd: Path, tool: str = "harness") -> subprocess.CompletedProcess:
    """The CLI in a subprocess with its address space capped at MEMORY_LIMIT and a time ceiling."""

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "MALLOC_ARENA_MAX": "2"}
    module = ["-m", "harness"] if tool == "harness" else ["-c", "from tinylm_ref.cli import main; main()"]
    start = time.monotonic()
    result = subprocess.run(
        [sys.executable, *module, *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        preexec_fn=cap,
        timeout=TIME_CEILING * 3,
    )
    assert time.monotonic() - start < TIME_CEILING, f"{args} took more than {TIME_CEILING} s"
    assert "MemoryError" not in result.stderr, result.stderr
    return result


def tinylm(*args: object, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", "from tinylm_ref.cli import main; main()", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        timeout=600,
    )


def checkpoint(root: Path, name: str, **config: object) -> Path:
    """A copy of the bundled 2.5m checkpoint under ``name`` (which may hold markup), config overridden."""
    target = root / name
    target.mkdir(parents=True)
    for file in ("config.json", "model.safetensors", "tokenizer.json"):
        shutil.copy(BUNDLED / file, target / file)
    data = json.loads((target / "config.json").read_text())
    data.update(config)
    (target / "config.json").write_text(json.dumps(data))
    return target


def small_suite(tmp_path: Path, extra: str = "", file: str = "s.yaml") -> Path:
    """One short prompt, three new tokens, no warmup: a run of it takes a second."""
    path = tmp_path / file
    path.write_text(
        f"name: s\nwarmup: 0\ndevice: cpu\nsampling: {{max_new_tokens: 3}}\n{extra}prompts: [{{id: a, text: Once upon a time}}]\n"
    )
    return path


# ---------------------------------------------------------------- row 1: YAML alias bomb


def alias_bomb(path: Path) -> Path:
    """Nine levels of nine aliases inside a metric's options: ~420 bytes, 9^9 values when expanded."""
    lines = ["name: bomb", "prompts: [{id: a, text: hi}]", "metrics:", "  perplexity:"]
    lines.append("    a: &a [lol,lol,lol,lol,lol,lol,lol,lol,lol]")
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"    {name}: &{name} [{','.join([f'*{prev}'] * 9)}]")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_row1_alias_bomb_is_refused_within_a_memory_budget(tmp_path):
    bomb = alias_bomb(tmp_path / "bomb.yaml")
    assert bomb.stat().st_size < 500
    one_line(limited("suites", "validate", bomb, cwd=tmp_path), "bomb.yaml:", "aliases")
    one_line(limited("run", bomb, "--models", "tinylm:random/2.5m", "--out", tmp_path / "r", cwd=tmp_path), "aliases")
    assert not (tmp_path / "r").exists()


def test_a_few_aliases_are_still_fine(tmp_path):
    suite = tmp_path / "s.yaml"
    suite.write_text(
        "name: s\nwarmup: 0\nsampling: &s {max_new_tokens: 3, seed: 1}\n"
        "metrics: {perplexity: {a: &o [1, 2]}, repetition_rate: {a: *o}}\nprompts: [{id: a, text: hi}]\n"
    )
    result = harness("suites", "validate", suite)
    assert result.returncode == 0, result.stderr


def test_deep_nesting_and_self_referencing_aliases_are_one_line(tmp_path):
    deep = tmp_path / "deep.yaml"
    deep.write_text(
        "name: d\nprompts: [{id: a, text: hi}]\nmetrics: {perplexity: {x: " + "[" * 200 + "]" * 200 + "}}\n"
    )
    loop = tmp_path / "loop.yaml"
    loop.write_text("name: l\nprompts: [{id: a, text: hi}]\nmetrics: {perplexity: {x: &x [*x]}}\n")
    result = harness("suites", "validate", deep, loop)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2 and "deep.yaml" in lines[0] and "loop.yaml" in lines[1], result.stderr


# ---------------------------------------------------------------- row 2: a 50 MB prompt


def test_row2_a_50mb_prompt_is_refused_from_its_size(tmp_path):
    big = tmp_path / "big.yaml"
    with open(big, "w") as handle:
        handle.write('name: big\nwarmup: 0\nprompts:\n  - id: a\n    text: "' + "word " * 10_000_000 + '"\n')
    one_line(limited("suites", "validate", big, cwd=tmp_path), "big.yaml", "MiB")
    one_line(limited("run", big, "--models", "2.5m", "--out", tmp_path / "r", cwd=tmp_path), "MiB")
    assert not (tmp_path / "r").exists()


def test_row2_a_prompt_over_a_mebibyte_is_refused_before_any_tokenizer(tmp_path):
    (tmp_path / "p.jsonl").write_text(json.dumps({"id": "long", "text": "word " * 400_000}) + "\n")
    suite = tmp_path / "s.yaml"
    suite.write_text("name: s\nprompts_file: p.jsonl\n")
    one_line(limited("run", suite, "--models", "2.5m", "--out", tmp_path / "r", cwd=tmp_path), "p.jsonl", "'long'")
    assert not (tmp_path / "r").exists()


# ---------------------------------------------------------------- rows 3 and 4: checkpoint configs


def test_row3_a_huge_config_beside_small_weights_allocates_nothing(tmp_path):
    huge = checkpoint(tmp_path, "huge", dim=2048, ffn_dim=262144)
    suite = small_suite(tmp_path)
    result = limited("run", suite, "--models", huge, "--out", tmp_path / "r", "--no-report", cwd=tmp_path)
    one_line(result, "model.safetensors", "config expects (2048")
    manifest = json.loads((tmp_path / "r" / "manifest.json").read_text())  # a load-time failure: recorded
    assert manifest["models"][0]["status"] == "failed"


def test_row3_a_pickled_checkpoint_is_checked_before_the_model_is_built(tmp_path):
    from safetensors.torch import load_file

    from tinylm_ref.checkpoint import CheckpointError, load_checkpoint

    pt = checkpoint(tmp_path, "pt", dim=2048, ffn_dim=262144)
    torch.save(load_file(str(pt / "model.safetensors")), pt / "model.pt")
    (pt / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="config expects"):
        load_checkpoint(pt)


@pytest.mark.parametrize(
    "config, needle",
    [
        ({"n_heads": 0}, "n_heads must be between 1"),
        ({"dim": "272"}, "dim must be an integer, got '272' (a string)"),
        ({"dim": 272.0}, "dim must be an integer, got 272.0 (a float)"),
        ({"n_layers": True}, "n_layers must be an integer"),
        ({"n_heads": 5}, "not divisible by n_heads=5"),
        ({"tie_weights": "no"}, "tie_weights must be true or false"),
        ({"max_seq_len": 2**40}, "max_seq_len must be between 1"),
    ],
)
def test_row4_bad_config_values_are_one_line(tmp_path, config, needle):
    from tinylm_ref.checkpoint import CheckpointError, load_checkpoint

    bad = checkpoint(tmp_path, "bad", **config)
    with pytest.raises(CheckpointError, match="config.json") as caught:
        load_checkpoint(bad)
    assert needle in str(caught.value) and "\n" not in str(caught.value)


def test_row4_through_the_cli(tmp_path):
    bad = checkpoint(tmp_path, "bad", n_heads=0)
    result = harness("run", small_suite(tmp_path), "--models", bad, "--out", tmp_path / "r", "--no-report")
    one_line(result, "config.json", "n_heads")
    (bad / "config.json").write_text('{"dim": NaN}')
    one_line(tinylm("sample", bad, "hi"), "config.json", "NaN")


# ---------------------------------------------------------------- row 5: non-finite numbers


@pytest.mark.parametrize(
    "extra, needle",
    [
        ("sampling: {temperature: .inf}\n", "sampling.temperature"),
        ("sampling: {temperature: .nan}\n", "sampling.temperature"),
        ("metrics: {perplexity: {window: .nan}}\n", "metrics.perplexity.window"),
        ("metrics: {perplexity: {deep: [1, {x: -.inf}]}}\n", "metrics.perplexity.deep.1.x"),
    ],
)
def test_row5_non_finite_numbers_validate_as_run_refuses(tmp_path, extra, needle):
    suite = small_suite(tmp_path, extra=extra)
    one_line(harness("suites", "validate", suite), needle, "finite")
    one_line(harness("run", suite, "--models", "tinylm:random/2.5m", "--out", tmp_path / "r"), needle)
    assert not (tmp_path / "r").exists()


def test_row5_nan_in_a_jsonl_prompts_file(tmp_path):
    (tmp_path / "p.jsonl").write_text('{"id": "a", "text": "hi", "category": NaN}\n')
    suite = tmp_path / "s.yaml"
    suite.write_text("name: s\nprompts_file: p.jsonl\n")
    one_line(harness("suites", "validate", suite), "p.jsonl:1", "NaN")


# ---------------------------------------------------------------- rows 6 and 7: CLI values


@pytest.mark.parametrize(
    "args, needles",
    [
        (["--model-option", "seed=1e23"], ["seed='1e23'", "0 to 9,223,372,036,854,775,807"]),
        (["--model-option", "seed=" + "9" * 25], ["seed=", "must be an integer from 0"]),
        (["--device", "mps"], ["--device mps", "available: auto, cpu"]),
        (["--device", "cuda:7"], ["--device cuda:7", "available:"]),
        (["--device", "tpu"], ["'tpu'", "is not a device"]),
        (["--model-option", "bogus=1"], ["bogus", "tinylm: seed, study_layout"]),
        (["--model-option", "sed=1"], ["did you mean 'seed'?"]),
        (["--model-option", "seed=1", "--model-option", "seed=2"], ["seed: given twice"]),
        (["--threads", "100000"], ["--threads 100000", "1 to 1,024"]),
        (["--batch-size", "0"], ["--batch-size 0", "1 to 4,096"]),
        (["--batch-size", "abc"], ["--batch-size", "--help"]),
    ],
)
def test_rows6_7_bad_cli_values_name_the_valid_range(tmp_path, args, needles):
    if args[:2] == ["--device", "cuda:7"] and torch.cuda.device_count() > 7:
        pytest.skip("this machine has a cuda:7")
    result = harness("run", small_suite(tmp_path), "--models", "tinylm:random/2.5m", "--out", tmp_path / "r", *args)
    one_line(result, *needles)
    assert not (tmp_path / "r").exists()


# ---------------------------------------------------------------- rows 9 and 10: markup


def test_row9_markup_in_model_paths_and_out_is_shown_as_typed(tmp_path):
    names = ["ck[/]", "ck[v2]", "ck[link=x]y", "tinylm:ck[bold]:smile:"]
    for name in names:
        checkpoint(tmp_path, name.removeprefix("tinylm:"))
    out = tmp_path / "out[v2]"
    suite = small_suite(tmp_path)
    result = harness(
        "run", suite, "--models", ",".join(names), "--out", out, "--no-report", cwd=tmp_path, env={"COLUMNS": "250"}
    )  # with progress bars: the model name is their task description
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"run directory: {out}" in result.stdout
    header = next(line for line in result.stdout.splitlines() if " metric " in line)
    for name in names:  # the summary table's columns, exactly as typed (no markup, no emoji)
        assert name in header, header
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "complete" and {m["status"] for m in manifest["models"]} == {"ok"}


def test_row9_adversarial_strings_in_every_echo_and_error(tmp_path):
    good = small_suite(tmp_path, file="s[bold]x[red]:smile:.yaml")
    missing = tmp_path / "[red]missing[/]:smile:.yaml"
    result = harness("suites", "validate", good, missing)
    assert f"{good}: ok" in result.stdout, result.stdout
    assert result.stderr.strip() == f"error: {missing}: file not found", result.stderr
    result = harness("run", good, "--models", "ck[/]\n[x]", "--out", tmp_path / "r")
    one_line(result, "ck[/]\\n[x]")


def test_row10_tinylm_sample_shows_prompt_and_output_as_text(tmp_path):
    result = tinylm("sample", BUNDLED, "[/] [bold]x :smile:", "--max-new-tokens", "3", "--temperature", "0")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("[/] [bold]x :smile:"), result.stdout


@pytest.mark.parametrize(
    "args, needles",
    [
        (["--temperature", "nan"], ["--temperature nan", "finite"]),
        (["--temperature", "-1"], ["--temperature -1.0", "≥ 0"]),
        (["--temperature", "inf"], ["--temperature inf"]),
        (["--top-k", "0"], ["--top-k 0", "from 1"]),
        (["--top-k", "-5"], ["--top-k -5"]),
        (["--max-new-tokens", "-3"], ["--max-new-tokens -3", "1 to 100,000"]),
        (["--n", "-1"], ["--n -1", "1 to 10,000"]),
        (["--seed", "-1"], ["--seed -1", "0 to"]),
        (["--device", "bogus"], ["'bogus'", "available: auto, cpu"]),
        (["--n", "x"], ["--n", "--help"]),
    ],
)
def test_row10_tinylm_sample_values(args, needles):
    if args == ["--device", "bogus"] and torch.cuda.is_available():
        needles = ["'bogus'", "available: auto, cpu, cuda"]
    one_line(tinylm("sample", BUNDLED, "hi", *args), *needles)


def test_row10_tinylm_train_values(tmp_path):
    one_line(
        tinylm("train", "--config", "2.5m", "--data", BUNDLED / "config.json", "--out", tmp_path / "o", "--lr", "nan"),
        "--lr nan",
    )
    assert not (tmp_path / "o").exists()


# ---------------------------------------------------------------- rows 11 to 13


def test_row11_a_suite_path_that_is_a_directory(tmp_path):
    folder = tmp_path / "suite.yaml"
    folder.mkdir()
    one_line(harness("suites", "validate", folder), "is a directory")
    one_line(harness("run", folder, "--models", "2.5m"), "is a directory")


def test_row12_a_malicious_pickle_is_one_line_that_suggests_safetensors(tmp_path):
    evil = checkpoint(tmp_path, "evil")
    (evil / "model.safetensors").unlink()
    marker = tmp_path / "pwned"
    torch.save({"tok_emb.weight": _Evil(str(marker))}, evil / "model.pt")
    result = harness("run", small_suite(tmp_path), "--models", evil, "--out", tmp_path / "r", "--no-report")
    line = one_line(result, "model.pt", "refused", "safetensors")
    assert "weights_only" not in line and "will likely succeed" not in line
    assert not marker.exists()


class _Evil:
    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


@pytest.mark.parametrize(
    "spec, needle",
    [
        ("tinylm:random/../2.5m", "unknown preset '../2.5m'"),
        ("tinylm:random/", "unknown preset ''"),
        ("tinylm:", "empty spec"),
        ("tinylm:/no/such/dir", "does not exist"),
        ("hf:", "empty spec"),
        ("hf:not a repo", "not a valid Hub id"),
        ("hf:./no-such-dir", "does not exist"),
    ],
)
def test_row13_bad_specs_leave_nothing_behind(tmp_path, spec, needle):
    result = harness("run", small_suite(tmp_path), "--models", spec, cwd=tmp_path)
    one_line(result, needle)
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("tie", [True, False])
def test_the_shape_check_matches_the_model_it_guards(tie):
    """``expected_shapes`` is computed, never built: it must list exactly ``LLM(config)``'s parameters."""
    from dataclasses import replace

    from tinylm_ref.checkpoint import expected_shapes
    from tinylm_ref.config import PRESETS
    from tinylm_ref.model import LLM

    for config in PRESETS.values():
        config = replace(config, tie_weights=tie)
        with torch.device("meta"):
            built = {key: tuple(value.shape) for key, value in LLM(config).state_dict().items()}
        assert expected_shapes(config) == built


def test_a_config_claiming_two_billion_layers_costs_what_the_file_holds(tmp_path):
    from tinylm_ref.checkpoint import CheckpointError, load_checkpoint

    bad = checkpoint(tmp_path, "deep", n_layers=2**31 - 1)
    start = time.monotonic()
    with pytest.raises(CheckpointError, match="missing"):
        load_checkpoint(bad)
    assert time.monotonic() - start < TIME_CEILING


def test_special_files_and_undecodable_arguments_are_one_line(tmp_path):
    one_line(harness("suites", "validate", "/dev/zero"), "not a regular file")
    suite = tmp_path / "s.yaml"
    suite.write_text("name: s\nprompts_file: /proc/self/environ\n")  # a regular file whose size says 0
    one_line(harness("suites", "validate", suite), "environ")
    one_line(tinylm("sample", BUNDLED, "a\udcffb"), "not valid UTF-8")
