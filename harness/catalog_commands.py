"""Listing and checking commands: ``suites validate``/``suites list``, ``models``, ``plugins``.

They live apart from ``harness.cli`` (which keeps ``run`` and the entry point) so each module stays one job:
these only read the package, the plugins and suite files, and print them (a table, or ``--json``).
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from harness.cli import JsonFlag, PluginsDir, _check_suite, _registry, console, err_console, print_json
from harness.errors import UserError
from harness.user_text import one_line, plain


def suites_validate(
    files: Annotated[list[str], typer.Argument(help="Suite YAML files or bundled names.")],
    plugins_dir: PluginsDir = None,
) -> None:
    """Check suite files (fields, metric names, judge spec, reference file); one line per file."""
    from harness.suite import load_suite
    from harness.suite_catalog import resolve_suite

    failed = False
    for path in files:
        try:
            loaded = load_suite(resolve_suite(path))
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


def suites_list(as_json: JsonFlag = False) -> None:
    """The suites shipped with the harness: run any of them by name (harness run NAME --models ...)."""
    from harness.suite_catalog import bundled_suites, summarize

    rows = [summarize(path) for path in bundled_suites().values()]
    if as_json:
        print_json([row.as_dict() for row in rows])
        return
    table = Table(title="bundled suites")
    for column in ("name", "prompts", "categories", "samples/prompt", "max new tokens", "description"):
        table.add_column(column)
    for row in rows:
        categories = ", ".join(f"{name} {count}" for name, count in row.categories.items())
        cells = (row.name, row.prompts, categories, row.samples_per_prompt, row.max_new_tokens, row.description)
        table.add_row(*(plain(str(cell)) for cell in cells))
    console.print(table)


def models_command(plugins_dir: PluginsDir = None, as_json: JsonFlag = False) -> None:
    """List the model specs every backend can resolve right now."""
    registry = _registry(plugins_dir)
    rows = [
        {"backend": name, "spec": spec, "resolves_to": description}
        for name, backend in registry.backends.items()
        for spec, description in backend.available()
    ]
    if as_json:
        print_json(rows)
        return
    table = Table(title="model specs")
    for column in ("backend", "spec", "resolves to"):
        table.add_column(column)
    for row in rows:
        table.add_row(*(plain(str(value)) for value in row.values()))
    console.print(table)


def plugins(plugins_dir: PluginsDir = None, as_json: JsonFlag = False) -> None:
    """List plugins, where they come from, their versions and what each registered."""
    registry = _registry(plugins_dir)
    rows = [
        {"plugin": info.name, "origin": info.origin, "version": info.version, "registered": list(info.registered)}
        for info in registry.plugins.values()
    ]
    if as_json:
        print_json(rows)
        return
    table = Table(title="plugins")
    for column in ("plugin", "origin", "version", "registered"):
        table.add_column(column)
    for row in rows:
        cells = (row["plugin"], row["origin"], row["version"] or "", ", ".join(row["registered"]))
        table.add_row(*(plain(v) for v in cells))
    console.print(table)


def add_commands(app: typer.Typer) -> None:
    suites = typer.Typer(help="Prompt suites: the bundled ones, and checking suite files.", no_args_is_help=True)
    suites.command("validate")(suites_validate)
    suites.command("list")(suites_list)
    app.add_typer(suites, name="suites")
    app.command("models")(models_command)
    app.command("plugins")(plugins)
