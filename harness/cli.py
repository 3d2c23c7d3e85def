"""``harness``: run suites, list models and plugins, and (via their modules) report and gate."""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from harness.errors import EXIT_INPUT, EXIT_INTERRUPTED, UserError
from harness.user_text import one_line, plain
from tinylm_ref.consoles import make_console

if TYPE_CHECKING:  # annotations only: 'harness --help' must not import the suite and plugin machinery
    from harness.plugins import Registry
    from harness.suite import LoadedSuite

app = typer.Typer(
    help="Benchmark and evaluate tiny language models.", no_args_is_help=True, pretty_exceptions_enable=False
)
console = make_console()  # results: stdout, never cut when piped
err_console = make_console(stderr=True)  # errors, warnings and progress bars

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def print_json(data: object) -> None:
    """Machine-readable output on stdout only (pipe it to jq); nothing else is printed with it."""
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def _version(value: bool) -> None:
    if value:
        from tinylm_ref import package_version

        console.print(plain(f"harness (tinylm-harness) {package_version()}"))
        raise typer.Exit(0)


@app.callback()
def _options(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Benchmark and evaluate tiny language models."""


PluginsDir = Annotated[
    Optional[Path],
    typer.Option("--plugins-dir", help="Also load plugins from *.py files here (or set HARNESS_PLUGINS_DIR)."),
]


def _registry(plugins_dir: Path | None):
    from harness.plugins import get_registry

    return get_registry(plugins_dir)


@app.command()
def run(
    suite: Annotated[
        Optional[str],
        typer.Argument(help="Suite: a YAML file or a bundled name (harness suites list); optional with --resume."),
    ] = None,
    models: Annotated[
        Optional[str],
        typer.Option(
            help="Model specs, comma-separated (10m,7m,hf:org/name), @FILE (one per line) or a glob ('ckpts/*')."
        ),
    ] = None,
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
    limit: Annotated[
        Optional[int], typer.Option(help="Only the first N prompts of each category (a partial run: not a baseline).")
    ] = None,
    seed: Annotated[Optional[int], typer.Option(help="Sampling seed instead of the suite's.")] = None,
    samples_per_prompt: Annotated[
        Optional[int], typer.Option(help="Samples per prompt instead of the suite's.")
    ] = None,
    track: Annotated[
        Optional[list[str]], typer.Option("--track", help="Log the finished run to this tracker, e.g. mlflow.")
    ] = None,
    concurrency: Annotated[
        Optional[str],
        typer.Option(help="Load mode for served models: requests kept in flight, one row per level, e.g. 1,4,16."),
    ] = None,
    progress: Annotated[bool, typer.Option(help="Show progress bars (on stderr).")] = True,
    executor: Annotated[str, typer.Option(help="Where samples are made: local (this process) or ray.")] = "local",
    ray_address: Annotated[
        Optional[str],
        typer.Option(help="Ray cluster to join (auto, HOST:PORT, ray://HOST:PORT); default: a local Ray."),
    ] = None,
    plugins_dir: PluginsDir = None,
) -> None:
    """Run SUITE on every model and write a run directory (and an HTML report)."""
    from harness.records import check_output_dir, check_run_files, ensure_new_dir, new_run_dir, read_manifest
    from harness.runner import RunOptions, SuiteRun
    from harness.suite_overrides import SuiteOverrides, suite_for_run
    from harness.terminal_table import summary_table
    from harness.work import Shard

    if out is not None and resume is not None:
        raise UserError("--out and --resume: give one; --resume continues the directory it names")
    if out is not None:  # a path that cannot hold the run is refused before any work
        check_output_dir(out, "--out")
    if resume is not None:  # a damaged run directory is refused before any model loads
        read_manifest(resume)
        check_run_files(resume)
    chosen = suite_for_run(suite, SuiteOverrides(limit, seed, samples_per_prompt), resume)
    loaded = chosen.loaded
    from harness.model_list import expand_model_specs

    specs = expand_model_specs(models)  # commas, @FILE, globs; a model listed twice is refused
    if not specs and resume is None:
        raise UserError("--models is required, e.g. --models 10m,7m,5m,2.5m ('harness models' lists specs)")
    if executor not in ("local", "ray"):
        raise UserError(f"--executor {executor!r}: use local or ray")
    if ray_address is not None and executor != "ray":
        raise UserError("--ray-address: only with --executor ray")
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
        if executor != "local":
            raise UserError("--concurrency and --executor ray: give one (load mode drives a served model from here)")
    if threads is not None:
        check_int("--threads", threads, 1, MAX_THREADS)
    model_options = parse_model_options(model_option or [])
    registry = _registry(plugins_dir)
    from harness.tracking import check_trackers

    trackers = check_trackers(track or [], registry.trackers)
    # fail fast, before any directory exists: specs no backend recognises, option keys no backend reads,
    # a device this machine does not have (spec syntax and option values: check_model_options below)
    _check_suite(loaded, registry)  # the same checks as 'suites validate': what it accepts, run runs
    check_specs(specs, registry, model_options, loaded.suite.judge)
    if executor == "local":  # a Ray cluster's workers check the device on their own machines
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
        suite_overrides=chosen.overrides.as_record(),
        partial=chosen.partial,
        concurrency=levels,
    )
    suite_run = SuiteRun(loaded, specs, Path("."), registry, options, err_console, resume=resume is not None)
    suite_run.load_resources()  # a bad reference file or judge fails here, before any directory exists
    if resume is None:
        suite_run.check_model_options()  # so do options a backend cannot honour (--dtype, --batch-size...)
    if executor == "ray":  # joined before the directory exists: a wrong address leaves nothing behind
        from harness.executors.ray_executor import RayExecutor

        options.executor = RayExecutor(ray_address, plugins_dir, device or loaded.suite.device)
        options.executor.connect()
    if resume is not None:
        run_dir = resume
    elif out is not None:
        run_dir = ensure_new_dir(out, "--out")
    else:
        run_dir = new_run_dir(Path("runs"), loaded.suite.name)
    suite_run.dir, suite_run.created = run_dir, resume is None
    console.print(plain(f"run directory: {run_dir}"), soft_wrap=True)
    try:
        code = suite_run.execute()
    finally:
        if options.executor is not None:
            options.executor.close()
    summary = suite_run.summary
    console.print(summary_table(summary))
    for outcome in suite_run.outcomes:
        if outcome.status == "failed":
            err_console.print(plain(f"error: {one_line(outcome.error)}"), soft_wrap=True)
    if code == 130:
        err_console.print(
            plain(f"interrupted; results so far are in {run_dir}; finish with: harness run --resume {run_dir}"),
            soft_wrap=True,
        )
    elif report:
        _write_report(run_dir, registry)
    if code != 130:
        _track(run_dir, trackers)
    console.print(plain(f"run directory: {run_dir}"), soft_wrap=True)
    raise typer.Exit(code)


def _track(run_dir: Path, trackers: list) -> bool:
    """Log to the chosen trackers; a tracker's failure is a warning (the run's files are its results)."""
    from harness.tracking import log_to_trackers

    lines, problems = log_to_trackers(run_dir, trackers)
    for line in lines:
        console.print(plain(line), soft_wrap=True)
    for problem in problems:
        err_console.print(
            plain(f"warning: {one_line(problem)}; retry with: harness track {run_dir} --to ..."), soft_wrap=True
        )
    return not problems


@app.command("track")
def track_command(
    run_dirs: Annotated[list[Path], typer.Argument(help="Finished run directories.")],
    to: Annotated[list[str], typer.Option("--to", help="Tracker name (repeatable), e.g. mlflow.")],
    plugins_dir: PluginsDir = None,
) -> None:
    """Log existing run directories to experiment trackers (MLflow built in; others are plugins)."""
    from harness.records import read_manifest
    from harness.tracking import check_trackers

    trackers = check_trackers(to, _registry(plugins_dir).trackers)
    for run_dir in run_dirs:
        read_manifest(run_dir)  # a directory that is not a run is one line, before anything is logged
    ok = all([_track(run_dir, trackers) for run_dir in run_dirs])
    raise typer.Exit(0 if ok else 1)


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


_FEATURE_COMMANDS_ADDED = []  # main() may run more than once in one process (in-process tests)


def _add_commands() -> None:
    """Commands that live with their feature: suites/models/plugins, report, gate/baseline, merge (added once)."""
    if _FEATURE_COMMANDS_ADDED:
        return
    _FEATURE_COMMANDS_ADDED.append(True)
    from harness import catalog_commands, merge
    from harness.gate import commands as gate_commands
    from harness.report import commands as report_commands
    from harness.serve import commands as serve_commands

    for module in (catalog_commands, report_commands, gate_commands, merge, serve_commands):
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
