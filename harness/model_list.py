"""``--models`` as a list: comma-separated specs, ``@FILE`` (one spec per line) and globs over checkpoints.

Why: a training sweep leaves dozens of checkpoint directories (``ckpts/step-1000`` ... ``step-20000``);
typing them comma-separated is error-prone and a shell glob would hand them over space-separated, which
``--models`` does not take. So the harness expands the list itself, the same for every executor:

* ``@sweep.txt``: one spec per line; blank lines and ``#`` comments are skipped; a line may be a glob;
* a spec with ``*``, ``?`` or ``[`` that is not itself an existing path is a glob over paths (after an
  optional ``backend:`` prefix, which is kept on every match): ``'ckpts/step-*'``, ``'tinylm:ckpts/step-*'``. Matches are ordered naturally
  (``step-2`` before ``step-10``), so a sweep's table reads in training order;
* a glob that matches nothing, or a file that cannot be read, is a one-line error naming it.
"""

from __future__ import annotations

import glob
import re
from pathlib import Path

from harness.errors import UserError

_GLOB_CHARS = re.compile(r"[*?\[]")
_PREFIX = re.compile(r"^([A-Za-z][A-Za-z0-9_.-]+):(?!//)")  # 'tinylm:' but not 'C:' (one letter) or 'http://'


def natural_key(text: str) -> list[int | str]:
    """Sort key that orders embedded numbers by value: step-2 < step-10."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def _expand_glob(item: str, where: str) -> list[str]:
    match = _PREFIX.match(item)
    prefix, pattern = (match.group(0), item[match.end() :]) if match else ("", item)
    if Path(pattern).expanduser().exists():  # a real path that happens to contain '[' or '?' is itself
        return [item]
    found = sorted(glob.glob(str(Path(pattern).expanduser())), key=natural_key)
    if not found:
        raise UserError(f"{where}: {item!r} matches no path; check the pattern (quote it so the shell keeps the '*')")
    return [prefix + path for path in found]


def _read_list_file(name: str) -> list[tuple[str, str]]:
    """(spec, where) for every non-comment line of ``@FILE``."""
    path = Path(name).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"--models @{name}: no such file; give a file with one model spec per line") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or "not UTF-8 text"
        raise UserError(f"--models @{name}: cannot read ({reason}); give a text file, one spec per line") from None
    items = []
    for number, line in enumerate(text.splitlines(), 1):
        spec = line.split("#", 1)[0].strip()
        if spec:
            items.append((spec, f"{path}:{number}"))
    if not items:
        raise UserError(f"--models @{name}: lists no model spec (only blank lines or # comments)")
    return items


def expand_model_specs(text: str | None) -> list[str]:
    """The model specs ``--models`` names, expanded; a spec listed twice is an error (its samples would mix)."""
    items: list[tuple[str, str]] = []
    for part in (text or "").split(","):
        part = part.strip()
        if not part:
            continue
        if part.startswith("@"):
            items.extend(_read_list_file(part[1:]))
        else:
            items.append((part, "--models"))
    specs: list[str] = []
    for spec, where in items:
        specs.extend(_expand_glob(spec, where) if _GLOB_CHARS.search(spec) else [spec])
    seen: set[str] = set()
    for spec in specs:
        if spec in seen:
            raise UserError(f"--models {text}: model {spec!r} is listed twice; list each model once")
        seen.add(spec)
    return specs
