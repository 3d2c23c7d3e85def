"""``harness``: run suites, list models and plugins, and (via their modules) report and gate."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from harness.errors import EXIT_INPUT, EXIT_INTERRUPTED, UserError
from harness.user_text import one_line, plain

if TYPE_CHECKING:  # annotations only: 'harness --help' must not import the suite and plugin machinery
    from harness.plugins import Registry
    from harness.suite import LoadedSuite

app = typer.Typer(
    help="Benchmark and evaluate tiny language models.", no_args_is_help=True, pretty_exceptions_enable=False
)
suites_app = typer.Typer(help="Prompt suites.", no_args_is_help=True)
app.add_typer(suites_app, name="suites")
console = Console()
err_console = Console(stderr=True)

PluginsDir = Annotated[
    Optional[Path],
    typer.Option("--plugins-dir", help="Also load plugins from *.py files here (or set HARNESS_PLUGINS_DIR)."),
]


def _registry(plugins_dir: Path | None):
    from harness.plugins import get_registry

    return get_registry(plugins_dir)


@app.command()
def run(
    suite: Annotated[Path, typer.Argument(help="Suite YAML file.")],
    models: Annotated[Optional[str], typer.Option(help="Comma-separated model specs, e.g. 10m,7m,hf:org/name.")] = None,
    out: Annotated[
        Optional[Path], typer.Option(help="Run directory to create (default: ./runs/<suite>-<time>-<id>).")
    ] = None,
    resume: Annotated[Optional[Path], typer.Option(help="Finish an interrupted run directory.")] = None,
    device: Annotated[Optional[str], typer.Option(help="auto, cpu, cuda or cuda:N (overrides the suite).")] = None,
    threads: Annotated[Optional[int], typer.Option(help="torch CPU threads (overrides the suite).")] = None,
    batch_size: Annotated[int, typer.Option(help="Generate this many prompts at once (throughput mode).")] = 1,
    shard: Annotated[Optional[str], typer.Option(help="Run only share K/N of the work, e.g. 2/8.")] = None,
    report: Annotated[bool, typer.Option(help="Write an HTML report at the end.")] = True,
    trust_remote_code: Annotated[bool, typer.Option(help="Allow Hub models that ship their own code.")] = False,
    compile: Annotated[
        bool, typer.Option("--compile", help="torch.compile the decode step (CUDA graphs on CUDA).")
    ] = False,
    dtype: Annotated[
        Optional[str],
        typer.Option(help="Weights dtype for backends that support it: float32 (default), float16, bfloat16."),
    ] = None,
    model_option: Annotated[
        Optional[list[str]],
        typer.Option("--model-option", help="Backend option KEY=VALUE (repeatable), e.g. add_bos=false."),
    ] = None,
    concurrency: Annotated[
        Optional[str],
        typer.Option(help="Load mode for served models: requests kept in flight, one row per level, e.g. 1,4,16."),
    ] = None,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
    plugins_dir: PluginsDir = None,
) -> None:
    """Run SUITE on every model and write a run directory (and an HTML report)."""
    from harness.records import check_output_dir, check_run_files, ensure_new_dir, new_run_dir, read_manifest
    from harness.runner import RunOptions, SuiteRun
    from harness.suite import load_suite
    from harness.terminal_table import summary_table
    from harness.work import Shard

    if out is not None and resume is not None:
        raise UserError("--out and --resume: give one; --resume continues the directory it names")
    if out is not None:  # a path that cannot hold the run is refused before any work
        check_output_dir(out, "--out")
    if resume is not None:  # a damaged run directory is refused before any model loads
        read_manifest(resume)
        check_run_files(resume)
    loaded = load_suite(suite)
    specs = [s.strip() for s in (models or "").split(",") if s.strip()]
    if not specs and resume is None:
        raise UserError("--models is required, e.g. --models 10m,7m,5m,2.5m ('harness models' lists specs)")
    if len(set(specs)) != len(specs):
        raise UserError(f"--models {models}: a model is listed twice")
    from harness.devices import resolve_device
    from harness.models import check_specs
    from harness.types import MAX_BATCH_SIZE, MAX_THREADS
    from harness.validation import check_int, parse_model_options

    check_int("--batch-size", batch_size, 1, MAX_BATCH_SIZE)
    levels = None
    if concurrency is not None:
        from harness.load import parse_levels

        if resume is not None:
            raise UserError("--concurrency and --resume: a resumed run keeps its load levels; drop --concurrency")
        if batch_size > 1:
            raise UserError("--concurrency and --batch-size: give one (--concurrency is for served models)")
        levels = parse_levels(concurrency)
    if threads is not None:
        check_int("--threads", threads, 1, MAX_THREADS)
    model_options = parse_model_options(model_option or [])
    registry = _registry(plugins_dir)
    # fail fast, before any directory exists: specs no backend recognises, option keys no backend reads,
    # a device this machine does not have (spec syntax and option values: check_model_options below)
    _check_suite(loaded, registry)  # the same checks as 'suites validate': what it accepts, run runs
    check_specs(specs, registry, model_options, loaded.suite.judge)
    resolve_device(device or loaded.suite.device)
    options = RunOptions(
        device=device,
        threads=threads,
        batch_size=batch_size,
        shard=Shard.parse(shard) if shard else None,
        trust_remote_code=trust_remote_code,
        progress=progress,
        dtype=dtype,
        compile=compile,
        model_options=model_options,
        concurrency=levels,
    )
    suite_run = SuiteRun(loaded, specs, Path("."), registry, options, console, resume=resume is not None)
    suite_run.load_resources()  # a bad reference file or judge fails here, before any directory exists
    if resume is None:
        suite_run.check_model_options()  # so do options a backend cannot honour (--dtype, --batch-size...)
    if resume is not None:
        run_dir = resume
    elif out is not None:
        run_dir = ensure_new_dir(out, "--out")
    else:
        run_dir = new_run_dir(Path("runs"), loaded.suite.name)
    suite_run.dir, suite_run.created = run_dir, resume is None
    console.print(plain(f"run directory: {run_dir}"), soft_wrap=True)
    code = suite_run.execute()
    summary = suite_run.summary
    console.print(summary_table(summary))
    for outcome in suite_run.outcomes:
        if outcome.status == "failed":
            err_console.print(plain(f"error: {one_line(outcome.error)}"), soft_wrap=True)
    if code == 130:
        err_console.print(
            plain(f"interrupted; results so far are in {run_dir}; finish with: harness run {suite} --resume {run_dir}"),
            soft_wrap=True,
        )
    elif report:
        _write_report(run_dir, registry)
    console.print(plain(f"run directory: {run_dir}"), soft_wrap=True)
    raise typer.Exit(code)


def _write_report(run_dir: Path, registry) -> None:
    """The report is a view of finished results: a bug in it must never cost the run."""
    from harness.report import write_report

    try:
        path = write_report([run_dir], run_dir / "report.html", registry.report_sections)
    except Exception as exc:
        err_console.print(
            plain(
                f"warning: the HTML report failed ({exc.__class__.__name__}: {one_line(exc)}); "
                f"results are intact; retry with: harness report {run_dir}"
            ),
            soft_wrap=True,
        )
        return
    console.print(plain(f"report: {path}"), soft_wrap=True)


def _check_suite(loaded: LoadedSuite, registry: Registry) -> None:
    """Everything about a suite that needs no model: metric names and the fields they require, the judge
    spec's syntax, the reference file. ``run`` and ``suites validate`` both call this and only this, so a
    suite that validates runs (the device is the machine's business: ``run`` checks it)."""
    from harness.metric_evaluation import check_suite_inputs
    from harness.models import check_spec
    from harness.types import LoadOptions

    check_suite_inputs(loaded, registry)
    if loaded.suite.judge:
        try:
            check_spec(loaded.suite.judge, registry, LoadOptions())
        except UserError as exc:
            raise UserError(f"{loaded.path}: field 'judge': {exc}") from None


@suites_app.command("validate")
def suites_validate(
    files: Annotated[list[Path], typer.Argument(help="Suite YAML files.")], plugins_dir: PluginsDir = None
) -> None:
    """Check suite files (fields, metric names, judge spec, reference file); one line per file."""
    from harness.suite import load_suite

    failed = False
    for path in files:
        try:
            loaded = load_suite(path)
            _check_suite(loaded, _registry(plugins_dir))
            console.print(
                plain(
                    f"{path}: ok ({len(loaded.prompts)} prompts × {loaded.suite.samples_per_prompt} samples, "
                    f"sha256 {loaded.sha256[:12]})"
                ),
                soft_wrap=True,
            )
        except UserError as exc:
            err_console.print(plain(f"error: {one_line(exc)}"), soft_wrap=True)
            failed = True
    raise typer.Exit(2 if failed else 0)


@app.command("models")
def models_command(plugins_dir: PluginsDir = None) -> None:
    """List the model specs every backend can resolve right now."""
    registry = _registry(plugins_dir)
    table = Table(title="model specs")
    for column in ("backend", "spec", "resolves to"):
        table.add_column(column)
    for name, backend in registry.backends.items():
        for spec, description in backend.available():
            table.add_row(plain(name), plain(spec), plain(description))
    console.print(table)


@app.command()
def plugins(plugins_dir: PluginsDir = None) -> None:
    """List plugins, where they come from, their versions and what each registered."""
    registry = _registry(plugins_dir)
    table = Table(title="plugins")
    for column in ("plugin", "origin", "version", "registered"):
        table.add_column(column)
    for info in registry.plugins.values():
        table.add_row(*(plain(v) for v in (info.name, info.origin, info.version or "", ", ".join(info.registered))))
    console.print(table)


_FEATURE_COMMANDS_ADDED = []  # main() may run more than once in one process (in-process tests)


def _add_commands() -> None:
    """Commands that live with their feature: report, gate/baseline, merge (added once per process)."""
    if _FEATURE_COMMANDS_ADDED:
        return
    _FEATURE_COMMANDS_ADDED.append(True)
    from harness import merge
    from harness.gate import commands as gate_commands
    from harness.report import commands as report_commands
    from harness.serve import commands as serve_commands

    for module in (report_commands, gate_commands, merge, serve_commands):
        module.add_commands(app)


def _plugins_dir_from_argv(argv: list[str]) -> Path | None:
    """``--plugins-dir`` read ahead of parsing, so the registry is built once, with it, for every command."""
    for index, arg in enumerate(argv):
        if arg == "--plugins-dir" and index + 1 < len(argv):
            return Path(argv[index + 1])
        if arg.startswith("--plugins-dir="):
            return Path(arg.split("=", 1)[1])
    return None


def _plugin_commands() -> None:
    """Let plugins add subcommands (``register_commands``); needs the registry before parsing.

    Only third-party plugins (entry points, ``--plugins-dir``, ``HARNESS_PLUGINS_DIR``) can add commands,
    so without any the registry (which imports torch and every built-in plugin) is left for the command
    that needs it: ``harness --help`` then answers in a fraction of a second.
    """
    from harness.plugins import has_external_plugins

    plugins_dir = _plugins_dir_from_argv(sys.argv[1:])
    if has_external_plugins(plugins_dir):
        _registry(plugins_dir).pm.hook.register_commands(app=app)


def main() -> None:
    """Entry point: user mistakes become one line on stderr and exit code 2, never a traceback."""
    _add_commands()
    warnings.simplefilter("default")
    try:
        from harness.plugins import PluginLoadWarning

        with warnings.catch_warnings():
            warnings.simplefilter("always", PluginLoadWarning)
            warnings.formatwarning = lambda message, category, *a, **k: f"warning: {message}\n"
            _plugin_commands()
            result = app(standalone_mode=False)  # click returns a command's Exit code instead of raising
        if isinstance(result, int):
            sys.exit(result)
    except UserError as exc:
        err_console.print(plain(error_line(exc)), soft_wrap=True)  # Text: no markup, emoji codes or highlighting
        sys.exit(exc.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(EXIT_INTERRUPTED)
    except Exception as exc:  # usage errors from (typer's vendored) click: one message, exit 2
        if hasattr(exc, "show") and hasattr(exc, "exit_code"):
            ctx = getattr(exc, "ctx", None)  # one line, like every other input error (not click's usage block)
            hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
            err_console.print(plain(f"error: {exc.format_message()}{hint}"), soft_wrap=True)
            sys.exit(exc.exit_code if isinstance(exc.exit_code, int) and exc.exit_code else EXIT_INPUT)
        if exc.__class__.__name__ == "Abort":
            sys.exit(EXIT_INTERRUPTED)
        raise


def error_line(exc: UserError) -> str:
    """The one line a user error prints (newlines folded: CI logs and tests read one line)."""
    return "error: " + one_line(" ".join(str(exc).split()))
