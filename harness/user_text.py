"""Text that came from a user or a file, made safe to print: never markup, never more than one line.

Rich interprets ``[...]`` as markup and ``:name:`` as emoji codes in every plain ``str`` it renders, so a
model path such as ``runs/[v2]`` is silently mangled and ``[/]`` raises in the middle of a run. A
:class:`rich.text.Text` is rendered as is, so user strings go through :func:`plain` (or :func:`escape` where
a markup string is wanted). Error lines go through :func:`one_line`: a file name with a newline in it must
not turn the CLI's "one line on stderr" contract into two.
"""

from __future__ import annotations

import unicodedata

from rich.markup import escape as _markup_escape
from rich.text import Text


def one_line(text: object) -> str:
    """``text`` with every line break and control character written as an escape (``\\n``, ``\\x1b``...).

    ``str.splitlines`` splits at more than ``\\n`` (``\\r``, ``\\x0b``, ``\\x1c``, ``\\x85``, ``\\u2028``...), and
    an ESC would let a string repaint the terminal, so every Cc/Zl/Zp character is escaped; tabs too. Lone
    surrogates (undecodable bytes of a command-line argument) are escaped as well: stderr cannot encode them.
    """
    out = []
    for char in str(text):
        if unicodedata.category(char) in ("Cc", "Cs", "Zl", "Zp"):
            out.append(repr(char)[1:-1])
        else:
            out.append(char)
    return "".join(out)


def plain(text: object, style: str = "") -> Text:
    """A Rich renderable that shows ``text`` literally (no markup, emoji codes or highlighting), on one line."""
    return Text(one_line(text), style=style)


def escape(text: object) -> str:
    """``text`` escaped for a Rich markup string; print it with ``emoji=False`` (Rich has no emoji escape)."""
    return _markup_escape(one_line(text))
