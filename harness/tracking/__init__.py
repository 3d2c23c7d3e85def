"""Experiment tracking: hand a finished run directory to the trackers the user asked for.

Why after everything is written, and why a failure is only a warning: a run's files are its results;
logging them elsewhere is a copy, and a tracker that cannot reach its server must not cost them.
"""

from __future__ import annotations

from pathlib import Path

from harness.errors import UserError, did_you_mean
from harness.records import MANIFEST, SUMMARY_JSON, read_json
from harness.types import FinishedRun, Tracker


def check_trackers(names: list[str], trackers: dict[str, Tracker]) -> list[Tracker]:
    """The trackers named by ``--track`` (checked before a run starts, so a typo costs nothing)."""
    chosen = []
    for name in dict.fromkeys(names):
        if name not in trackers:
            raise UserError(
                f"--track {name}: no such tracker{did_you_mean(name, list(trackers))}; "
                f"available: {', '.join(trackers) or 'none'} ('harness plugins' lists them)"
            )
        chosen.append(trackers[name])
    return chosen


def finished_run(path: Path) -> FinishedRun:
    """A run directory's manifest and summary, as trackers receive them."""
    manifest = read_json(path / MANIFEST, "run directory")
    summary_path = path / SUMMARY_JSON
    summary = read_json(summary_path, "run directory") if summary_path.is_file() else {}
    report = path / "report.html"
    return FinishedRun(path=path, manifest=manifest, summary=summary, report=report if report.is_file() else None)


def log_to_trackers(path: Path, trackers: list[Tracker]) -> tuple[list[str], list[str]]:
    """(lines to print, warnings): each tracker's own line, or why it failed."""
    if not trackers:
        return [], []
    run = finished_run(path)
    lines, problems = [], []
    for tracker in trackers:
        try:
            lines.append(f"{tracker.name}: {tracker.log_run(run)}")
        except UserError as exc:
            problems.append(f"{tracker.name}: {exc}")
        except Exception as exc:  # a tracker's bug or its server's failure: the run's files are untouched
            problems.append(
                f"{tracker.name} failed ({exc.__class__.__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
            )
    return lines, problems
