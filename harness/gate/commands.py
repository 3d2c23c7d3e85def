"""``harness gate`` and ``harness baseline export``.

The main CLI calls :func:`add_commands`; everything else about gates lives in this package.
Exit codes are the contract with CI: 0 pass, 1 regression, 2 usage or input error (one line on
stderr, no traceback), 3 inconclusive when ``--fail-on-inconclusive`` is given.
"""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, NoReturn, Optional

import typer

from harness.errors import UserError

# The gate's machinery (scipy, pandas) is imported inside the commands: registering them must stay
# cheap, because every ``harness`` invocation (``--help`` included) registers every command.


class OutputFormat(str, Enum):
    """What ``harness gate`` prints on stdout (files are written with --json/--junit/--markdown)."""

    table = "table"
    markdown = "markdown"
    json = "json"
    junit = "junit"
    none = "none"


def _exit(code: int) -> NoReturn:
    """Exit with the gate's verdict via SystemExit, not ``typer.Exit``.

    Why: an app invoked with ``standalone_mode=False`` turns ``typer.Exit`` into a return value, and a
    caller that ignores it would exit 0 on a regression. SystemExit reaches the process either way.
    Input errors are not verdicts: they are raised as UserError and mapped by ``harness.cli.main``.
    """
    sys.exit(code)


def _check_outputs(paths: dict[str, Path | None]) -> None:
    """Every output file is checked before the gate reads anything: a bad path costs nothing."""
    from harness.records import check_output_file

    for flag, path in paths.items():
        if path is not None:
            check_output_file(path, flag)


def _write(path: Path, text: str) -> None:
    from harness.records import write_text_atomic

    write_text_atomic(path, text)


def gate(
    candidate: Annotated[
        list[Path],
        typer.Argument(help="Candidate run directory; several (or a directory of run directories) = one round each."),
    ],
    baseline: Annotated[
        list[Path],
        typer.Option(
            "--baseline",
            "-b",
            help="Baseline: a baseline.json from 'harness baseline export', or run directories (rounds).",
        ),
    ],
    rules: Annotated[
        Optional[Path], typer.Option("--rules", "-r", help="Rules YAML (see docs/ci.md); defaults without.")
    ] = None,
    model: Annotated[
        Optional[list[str]], typer.Option("--model", "-m", help="Gate only this model (repeatable).")
    ] = None,
    metric: Annotated[Optional[list[str]], typer.Option("--metric", help="Gate only this metric (repeatable).")] = None,
    rounds: Annotated[
        Optional[int],
        typer.Option("--rounds", min=1, help="Expect exactly N rounds per side; timing metrics compare round medians."),
    ] = None,
    fail_on_inconclusive: Annotated[
        bool, typer.Option("--fail-on-inconclusive", help="Exit 3 when a gate lacks the data to decide.")
    ] = False,
    output_format: Annotated[
        OutputFormat, typer.Option("--format", "-f", help="What to print on stdout.")
    ] = OutputFormat.table,
    json_path: Annotated[Optional[Path], typer.Option("--json", help="Also write the JSON result here.")] = None,
    junit_path: Annotated[Optional[Path], typer.Option("--junit", help="Also write JUnit XML here.")] = None,
    markdown_path: Annotated[
        Optional[Path], typer.Option("--markdown", help='Also write Markdown here (e.g. "$GITHUB_STEP_SUMMARY").')
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Bootstrap seed (results are deterministic for a seed).")] = 0,
    model_map: Annotated[
        Optional[list[str]],
        typer.Option("--map", help="Compare candidate model CANDIDATE with baseline model BASELINE (repeatable)."),
    ] = None,
) -> None:
    """Fail when CANDIDATE regresses against BASELINE: exit 0 pass, 1 regression, 2 input error, 3 inconclusive."""
    from harness.gate.data import load_side, map_models, parse_model_map, refuse_partial
    from harness.gate.engine import run_gate
    from harness.gate.report import render_json, render_junit, render_markdown, render_table
    from harness.gate.rules import load_rules

    _check_outputs({"--json": json_path, "--junit": junit_path, "--markdown": markdown_path})
    rule_set = load_rules(rules)
    if any(p.is_file() for p in candidate):
        raise UserError("the candidate must be run directories, not a baseline file")
    mapping = parse_model_map(model_map or [])
    base_side = load_side(list(baseline), label="baseline")
    refuse_partial(base_side, "a gate baseline")
    cand_side = load_side(list(candidate), label="candidate")
    base_side = map_models(base_side, cand_side, mapping)
    result = run_gate(
        base_side,
        cand_side,
        rule_set,
        models=model or None,
        metrics=metric or None,
        rounds=rounds,
        fail_on_inconclusive=fail_on_inconclusive,
        seed=seed,
    )
    outputs = {json_path: render_json, junit_path: render_junit, markdown_path: render_markdown}
    for path, render in outputs.items():
        if path is not None:
            _write(path, render(result))
    if output_format is OutputFormat.table:
        render_table(result)
    elif output_format is not OutputFormat.none:
        render = {
            OutputFormat.markdown: render_markdown,
            OutputFormat.json: render_json,
            OutputFormat.junit: render_junit,
        }[output_format]
        sys.stdout.write(render(result))
    _exit(result.exit_code)


def export(
    run_dirs: Annotated[list[Path], typer.Argument(help="Run directory; several = rounds (for timing gates).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the baseline file.")] = Path(
        "baseline.json"
    ),
    model: Annotated[
        Optional[list[str]], typer.Option("--model", "-m", help="Export only this model (repeatable).")
    ] = None,
    metric: Annotated[
        Optional[list[str]], typer.Option("--metric", help="Export only this metric (repeatable).")
    ] = None,
) -> None:
    """Write a compact, commit-friendly baseline file from finished run directories."""
    from harness.gate.baseline import write_baseline
    from harness.gate.data import expand_run_paths, refuse_partial, side_from_runs
    from harness.records import load_run

    _check_outputs({"--output": output})
    side = side_from_runs([load_run(p) for p in expand_run_paths(list(run_dirs))], label=str(run_dirs[0]))
    refuse_partial(side, "exported as a baseline")
    data = write_baseline(side, output, models=model or None, metrics=metric or None)
    samples = sum(len(block["rows"]) for block in data["rounds"][0]["models"].values())
    typer.echo(
        f"wrote {output}: suite {data['suite'].get('name')!r}, {len(data['models'])} model(s), "
        f"{len(data['metrics'])} metric(s), {samples} sample(s), {len(data['rounds'])} round(s), "
        f"{output.stat().st_size} bytes"
    )


def add_commands(app: typer.Typer) -> None:
    """Add ``gate`` and ``baseline export`` to the main ``harness`` app."""
    app.command("gate", help=gate.__doc__)(gate)
    baseline_app = typer.Typer(help="Baselines for 'harness gate'.", no_args_is_help=True)
    baseline_app.command("export", help=export.__doc__)(export)
    app.add_typer(baseline_app, name="baseline")
