"""The ``harness report`` command. harness/cli.py calls ``add_commands(app)`` to attach it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

# plugins directory (or None) -> the sections plugins registered through register_report_sections
SectionsProvider = Callable[[Optional[Path]], Sequence[Any]]


def registry_sections(plugins_dir: Optional[Path]) -> list[Any]:
    """Sections from the process-wide plugin registry (entry points, --plugins-dir, HARNESS_PLUGINS_DIR)."""
    try:
        from harness.plugins import get_registry
    except ImportError:  # the plugin manager is optional for reading run directories
        return []
    return list(get_registry(plugins_dir).report_sections)


def default_output(run_dirs: Sequence[Path]) -> Path:
    """``reports/<first run directory name>.html`` under the current directory."""
    return Path("reports") / f"{Path(run_dirs[0]).resolve().name or 'report'}.html"


def add_commands(app: typer.Typer, sections_provider: SectionsProvider = registry_sections) -> None:
    """Add ``report`` to ``app``.

    ``sections_provider(plugins_dir)`` returns the plugin sections; it runs only when the command runs,
    so plugins load lazily. Tests pass their own provider to avoid loading every installed plugin.
    """

    @app.command("report")
    def report(
        run_dirs: Annotated[
            list[Path], typer.Argument(help="Run directories written by 'harness run'; the first is the baseline.")
        ],
        out: Annotated[
            Optional[Path], typer.Option("-o", "--out", help="HTML file to write (default: reports/<run>.html).")
        ] = None,
        plugins_dir: Annotated[
            Optional[Path], typer.Option("--plugins-dir", help="Also load plugins from *.py files here.")
        ] = None,
    ) -> None:
        """Write one self-contained HTML report (Table 2, scatter plots, distributions, sample browser;
        a comparison view when given two or more runs of one suite)."""
        from harness.report.render import write_report  # plotly and friends: only when a report is made

        target = out or default_output(run_dirs)
        path = write_report(run_dirs, target, list(sections_provider(plugins_dir)))
        typer.echo(f"report written: {path} ({path.stat().st_size / 1e6:.1f} MB)")
