"""Command-line values checked once, each with one line that gives the valid range.

Typer checks types; everything a type cannot say (ranges, which ``--model-option`` keys a backend
reads) is checked here, before ``harness run`` creates anything, so a bad value costs nothing
and is never a crash halfway through a run.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from harness.errors import UserError, did_you_mean


def check_int(label: str, value: int, low: int, high: int) -> int:
    """``value`` if ``low <= value <= high``, else a UserError that states the range."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise UserError(f"{label} {value}: must be an integer from {low:,} to {high:,}")
    return value


def parse_int(label: str, text: Any, low: int, high: int) -> int:
    """An integer option given as text (``--model-option seed=7``); ``1e23``, ``7.0`` or ``x`` are refused."""
    if isinstance(text, int) and not isinstance(text, bool):
        return check_int(label, text, low, high)
    stripped = str(text).strip()
    digits = stripped[1:] if stripped[:1] in "+-" else stripped
    if not digits.isascii() or not digits.isdigit() or len(digits) > 30 or not low <= int(stripped) <= high:
        raise UserError(f"{label}={text!r}: must be an integer from {low:,} to {high:,}")
    return int(stripped)


def parse_model_options(pairs: Iterable[str]) -> dict[str, str]:
    """``KEY=VALUE`` strings to a dict; a key given twice is refused rather than silently overwritten."""
    options: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UserError(f"--model-option {pair!r}: expected KEY=VALUE, e.g. add_bos=false")
        if key in options:
            raise UserError(f"--model-option {key}: given twice; give each key once")
        options[key] = value.strip()
    return options


def check_option_keys(options: dict[str, Any], backends: Iterable[Any]) -> None:
    """Refuse ``--model-option`` keys that none of the run's backends reads.

    Backends say what they read in an optional ``option_keys`` attribute; when one of them does not
    (a plugin written before it existed), unknown keys cannot be told from its keys and pass.
    """
    backends = list({id(b): b for b in backends}.values())
    if not options or not backends or any(getattr(b, "option_keys", None) is None for b in backends):
        return
    known = {key: b.name for b in backends for key in b.option_keys}
    for key in options:
        if key not in known:
            listing = "; ".join(f"{b.name}: {', '.join(b.option_keys) or 'none'}" for b in backends)
            raise UserError(
                f"--model-option {key}: no backend of this run reads it{did_you_mean(key, list(known))}; "
                f"known keys are {listing}"
            )
