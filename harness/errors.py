"""User-facing errors: one line that names the file, field or model and says how to fix it."""

from __future__ import annotations


class UserError(Exception):
    """A mistake in the user's input. The CLI prints it as one line and exits with code 2."""

    exit_code = 2


def did_you_mean(word: str, choices: list[str] | tuple[str, ...] | set[str]) -> str:
    """A ' (did you mean X?)' suffix when a close match exists, else ''."""
    import difflib

    match = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {match[0]!r}?)" if match else ""
