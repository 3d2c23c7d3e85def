"""User-facing errors and the process exit codes: the one place both are defined.

Every command raises :class:`UserError` (or a subclass carrying another exit code) for a mistake in
its input; ``harness.cli.main`` alone turns it into one line on stderr and an exit code. CI reads the
exit code, so a damaged input must never exit with ``EXIT_REGRESSION``.
"""

from __future__ import annotations

#: The exit-code contract with CI and shells (docs/ci.md, docs/reliability.md).
EXIT_OK = 0
EXIT_REGRESSION = 1  # ``harness gate``: a metric regressed; ``harness run``: a model crashed
EXIT_INPUT = 2  # the user's input is wrong or damaged; one line on stderr says which and how to fix it
EXIT_INCONCLUSIVE = 3  # ``harness gate --fail-on-inconclusive``: a gate lacked the data to decide
EXIT_INTERRUPTED = 130  # SIGINT/SIGTERM: results so far are kept and ``--resume`` finishes the run


class UserError(Exception):
    """A mistake in the user's input. The CLI prints it as one line and exits with ``exit_code``."""

    exit_code = EXIT_INPUT


class DamagedRecordError(UserError):
    """A run directory or baseline file that does not hold what the harness wrote (edited, truncated,
    appended to, or from another tool). Still an input error: never a traceback, never exit 1."""


def did_you_mean(word: str, choices: list[str] | tuple[str, ...] | set[str]) -> str:
    """A ' (did you mean X?)' suffix when a close match exists, else ''."""
    import difflib

    match = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {match[0]!r}?)" if match else ""
