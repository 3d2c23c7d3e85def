"""Generated command lines and suite files through ``harness run``, ``harness suites validate`` and
``tinylm sample``, in process (subprocesses are too slow for this many cases). Whatever the input, the
command exits 0, or exits 2 with exactly one line on stderr and, for ``run``, leaves no run directory.
Never a traceback, never exit 1: every generated model loads, so a crash can only be a bug.

Values are drawn from small lists of valid and hostile ones, never from valid-but-huge ranges, so a
generated run that is accepted finishes in about a second."""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import shutil
import sys
import tempfile
import traceback
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

REPO = Path(__file__).resolve().parents[2]
BUNDLED = REPO / "tinylm_ref" / "checkpoints" / "2.5m"
SETTINGS = settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "30")),
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)

TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12)
MARKUP = st.sampled_from(["[/]", "[bold]", "[link=x]", ":smile:", "[v2]", "\\[", "\n", "\x1b[2J", ""])
HOSTILE_SUITES = [
    "",
    "[",
    "name: s\n\tprompts: x\n",
    "--- 1\n--- 2\n",
    "x: &x [*x]\n",
    "name: s\nprompts: [{id: a, text: hi}]\nmetrics: {perplexity: {x: " + "[" * 300 + "]" * 300 + "}}\n",
    "name: b\nprompts: [{id: a, text: hi}]\nmetrics:\n  perplexity:\n    a: &a [l,l,l,l,l,l,l,l,l]\n"
    + "".join(f"    {n}: &{n} [{','.join([f'*{p}'] * 9)}]\n" for p, n in zip("abcdefg", "bcdefgh", strict=True)),
    "name: s\nprompts_file: /dev/zero\n",
    "name: s\nprompts_file: /proc/self/environ\n",
    "name: s\nprompts_file: .\n",
    "name: s\nprompts_file: nope.jsonl\n",
    "name: s\nprompts_file: p.jsonl\n",
    "name: s\nprompts: [{id: a, text: hi}]\nprompts_file: p.jsonl\n",
    "name: s\nprompts: [{id: a, text: hi}, {id: a, text: ho}]\n",
]

#: (field path, value): each sets one suite field to something valid-but-unusual or to something wrong.
CHANGES = (
    [(("sampling", "temperature"), v) for v in (0, 1e308, 1e-300, -1, math.inf, math.nan, "hot")]
    + [(("sampling", "top_k"), v) for v in (None, 1, 2**31, 0, -3)]
    + [(("sampling", "max_new_tokens"), v) for v in (1, 0, -1, 100_001, 2.5, "x")]
    + [(("sampling", "seed"), v) for v in (0, 2**63 - 1, -1, 2**63, "s")]
    + [(("samples_per_prompt",), v) for v in (2, 0, -1, 10**6, 1.5, math.nan)]
    + [(("warmup",), v) for v in (1, -1, 5000, "a")]
    + [(("device",), v) for v in ("auto", "mps", "cuda:9", "gpu", 3)]
    + [(("threads",), v) for v in (1, 0, 5000)]
    + [
        (("metrics",), v)
        for v in (
            ["perplexity", "repetition_rate"],
            ["perplexty"],
            ["heldout_bpb"],
            {"perplexity": None},
            {"perplexity": {"x": math.nan}},
            {"perplexity": {"[/]": "[bold]", "deep": [[[[1]]]]}},
        )
    ]
    + [(("judge",), v) for v in ("tinylm:random/../2.5m", "10mm", "hf:", "tinylm:/nope")]
    + [(("name",), v) for v in ("bad name", "", "[x]", 3)]
    + [
        (("unknown_field",), 1),
        (("prompts",), []),
        (("prompts",), "not a list"),
        (("prompts_file",), "p.jsonl"),
    ]
)
prompt = st.fixed_dictionaries(
    {
        "id": st.one_of(st.text(min_size=1, max_size=8), st.integers(0, 3)),
        "text": st.one_of(st.text(min_size=1, max_size=24), MARKUP.filter(bool), st.just("Once upon a time")),
    },
    optional={"category": TEXT},
)


@st.composite
def suite_files(draw: st.DrawFn) -> str | bytes:
    """A suite file's content: a valid suite with zero to two changes (dumped as YAML, with an anchor and an
    alias where an object repeats), or a raw hostile text."""
    kind = draw(st.sampled_from(["structured"] * 5 + ["raw", "bytes"]))
    if kind == "raw":
        return draw(st.sampled_from(HOSTILE_SUITES))
    if kind == "bytes":
        return draw(st.sampled_from([b"name: s\nprompts: [{id: a, text: caf\xe9}]\n", b"\xff\xfe\x00", b"name: \x00"]))
    data: dict = {"name": "s", "warmup": 0, "device": "cpu", "sampling": {"max_new_tokens": 2}}
    data["prompts"] = draw(st.lists(prompt, min_size=1, max_size=3, unique_by=lambda p: str(p["id"])))
    if draw(st.booleans()):  # the same object twice: safe_dump writes an anchor and an alias
        data["metrics"] = {"perplexity": (shared := {"a": [1, 2]}), "repetition_rate": shared}
    for path, value in draw(st.lists(st.sampled_from(CHANGES), max_size=draw(st.sampled_from([0, 0, 1, 2])))):
        target = data
        for key in path[:-1]:
            target = target.setdefault(key, {})
        target[path[-1]] = value
    return yaml.safe_dump(data, allow_unicode=True)


VALID_MODELS = ["tinylm:random/2.5m", "2.5m", "ck[v2]", "tinylm:ck:smile:"]
BAD_MODELS = [
    "tinylm:random/../2.5m",
    "tinylm:random/3m",
    "tinylm:/nope",
    "hf:",
    "hf:not a repo",
    "bogus:x",
    "10mm",
    "[/]",
    "",
]
#: option -> (valid values, wrong values)
OPTIONS = {
    "--device": (["cpu", "auto"], ["mps", "cuda:5", "tpu"]),
    "--batch-size": (["1", "2"], ["0", "-1", "1000000", "x"]),
    "--threads": (["1"], ["0", "1000000", "1.5"]),
    "--dtype": (["float32", "bfloat16"], ["float16", "int8"]),
    "--model-option": (
        ["seed=1"],
        ["seed=1e23", "seed=-1", "bogus=1", "add_bos=true", "=x", "novalue", "study_layout=[1]"],
    ),
    "--shard": (["1/1"], ["0/0", "a", "3/2"]),
    "--out": (["out", "out[v2]", "out:smile:"], []),
}


@st.composite
def run_arguments(draw: st.DrawFn) -> list[str]:
    """Valid models and options, then zero to two wrong ones (a wrong model spec or option value)."""
    specs = draw(st.lists(st.sampled_from(VALID_MODELS), min_size=1, max_size=2, unique=True))
    args: list[str] = []
    for option, (valid, _) in OPTIONS.items():
        if draw(st.integers(0, 3)) == 0:
            args += [option, draw(st.sampled_from(valid))]
    for _ in range(draw(st.sampled_from([0, 0, 1, 2]))):
        if draw(st.booleans()):
            specs.append(draw(st.sampled_from(BAD_MODELS) | TEXT))
        else:
            option = draw(st.sampled_from([o for o, (_, wrong) in OPTIONS.items() if wrong]))
            args += [option, draw(st.sampled_from(OPTIONS[option][1]))]
    args = ["--models", ",".join(specs), *args]
    args.append(draw(st.sampled_from(["--progress", "--no-progress"])))
    return [*args, "--no-report"]


@pytest.fixture(scope="module")
def shared(tmp_path_factory) -> Path:
    """Checkpoints the generated specs may name: a markup-named copy of the bundled 2.5m, and one with a colon."""
    root = tmp_path_factory.mktemp("fuzz_shared")
    for name in ("ck[v2]", "ck:smile:"):
        shutil.copytree(BUNDLED, root / name)
    return root


def invoke(main: Callable[[], None], argv: list[str], cwd: Path) -> tuple[int, str, str]:
    """Run a CLI entry point in this process: (exit code, stdout, stderr); an escaped exception is code 1."""
    out, err = io.StringIO(), io.StringIO()
    old_argv, old_cwd, threads = sys.argv, os.getcwd(), torch.get_num_threads()
    sys.argv = argv
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main()
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
            except BaseException:  # a crash: the assertion below shows it
                err.write(traceback.format_exc())
                code = 1
    finally:
        sys.argv = old_argv
        os.chdir(old_cwd)
        torch.set_num_threads(threads)  # --threads must not leak into the rest of the test session
    return code, out.getvalue(), err.getvalue()


def check(code: int, stdout: str, stderr: str, argv: list[str]) -> None:
    event(f"exit {code}")
    shown = f"{argv}\nexit {code}\nstdout: {stdout[-2000:]}\nstderr: {stderr[-4000:]}"
    assert "Traceback" not in stderr, shown
    assert code in (0, 2), shown
    if code == 2:
        lines = stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), shown


def workdir(shared: Path, content: str | bytes) -> Path:
    """A fresh directory holding the suite (and the prompts file some suites name) beside the checkpoints."""
    cwd = Path(tempfile.mkdtemp(prefix="fuzz_"))
    for name in ("ck[v2]", "ck:smile:"):
        (cwd / name).symlink_to(shared / name, target_is_directory=True)
    (cwd / "p.jsonl").write_text(json.dumps({"id": "a", "text": "Once upon a time"}) + "\n")
    suite = cwd / "suite.yaml"
    suite.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return cwd


@SETTINGS
@given(content=suite_files(), args=run_arguments())
def test_harness_run_exits_0_or_refuses_in_one_line_leaving_nothing(shared, content, args):
    from harness.cli import main

    cwd = workdir(shared, content)
    try:
        argv = ["harness", "run", "suite.yaml", *args]
        code, stdout, stderr = invoke(main, argv, cwd)
        check(code, stdout, stderr, argv)
        out = cwd / args[args.index("--out") + 1] if "--out" in args else None
        if code == 2:  # a refusal: nothing created, neither --out nor ./runs
            assert not (cwd / "runs").exists() and (out is None or not out.exists()), (argv, stderr)
        else:
            run_dir = out if out is not None else next((cwd / "runs").iterdir())
            assert json.loads((run_dir / "manifest.json").read_text())["status"] == "complete", argv
    finally:
        shutil.rmtree(cwd, ignore_errors=True)


@SETTINGS
@given(content=suite_files())
def test_suites_validate_exits_0_or_refuses_in_one_line(shared, content):
    from harness.cli import main

    cwd = workdir(shared, content)
    try:
        argv = ["harness", "suites", "validate", "suite.yaml"]
        code, stdout, stderr = invoke(main, argv, cwd)
        check(code, stdout, stderr, argv)
        assert code == 2 or stdout.startswith("suite.yaml: ok"), stdout
    finally:
        shutil.rmtree(cwd, ignore_errors=True)


@SETTINGS
@given(
    checkpoint=st.sampled_from([str(BUNDLED), "ck[v2]", "/nope", "suite.yaml", ""]),
    prompt_text=st.one_of(TEXT, MARKUP),
    options=st.dictionaries(
        st.sampled_from(["--temperature", "--top-k", "--max-new-tokens", "--n", "--seed", "--device"]),
        st.sampled_from(["0", "1", "3", "-1", "-5", "nan", "inf", "1e23", "x", "cpu", "bogus", "mps", str(2**64)]),
        max_size=3,
    ),
)
def test_tinylm_sample_exits_0_or_refuses_in_one_line(shared, checkpoint, prompt_text, options):
    from tinylm_ref.cli import main

    cwd = workdir(shared, "name: s\n")
    try:
        flat = [part for option, value in options.items() for part in (option, value)]
        argv = ["tinylm", "sample", checkpoint, prompt_text, "--max-new-tokens", "2", *flat]
        code, stdout, stderr = invoke(main, argv, cwd)
        check(code, stdout, stderr, argv)
    finally:
        shutil.rmtree(cwd, ignore_errors=True)
