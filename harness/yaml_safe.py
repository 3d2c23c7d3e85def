"""YAML and JSON from user files at a cost linear in their size, parsed once, with plain numbers only.

PyYAML composes an alias (``*a``) as a second reference to the anchored node, so composing stays linear;
what explodes is every consumer that walks the result as a tree (validation, ``model_dump``, the JSON
hash): nine levels of ten aliases are 10^9 nodes from a 400-byte file. So the composed graph is weighed
(memoised, linear) *before* anything walks it, and refused when its tree would outweigh the file by more
than :data:`ALIAS_EXPANSION` times. Nesting is capped too (every consumer recurses), files are read with a
byte cap instead of trusting ``stat`` (``/proc`` files say 0 bytes), and non-finite floats (``.inf``,
``.nan``, JSON's ``NaN``) are refused wherever they occur, with the line, since no suite field means them.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import yaml

from harness.errors import UserError

#: A suite or prompts file larger than this is refused before it is parsed (prompts are capped at 1 MiB each).
MAX_FILE_BYTES = 16 * 2**20
#: How many times its own size the tree behind aliases may weigh (scalars by length, collections by count).
ALIAS_EXPANSION = 4
#: Expansion always allowed, whatever the file size (a few repeated mappings in a small suite).
MIN_EXPANSION_BUDGET = 100_000
#: Deepest nesting of mappings and lists (suites need four levels; every consumer recurses).
MAX_DEPTH = 64

_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when installed: ~50x faster


def read_capped(path: Path, what: str = "file", limit: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of a regular file, refusing directories, devices, FIFOs and anything over ``limit``."""
    try:
        if path.is_dir():
            raise UserError(f"{path}: is a directory; give the path of a {what}")
        if not path.exists():
            raise UserError(f"{path}: file not found")
        if not path.is_file():
            raise UserError(f"{path}: not a regular file (a device, FIFO or socket); give the path of a {what}")
        with open(path, "rb") as handle:
            data = handle.read(limit + 1)
    except UserError:
        raise
    except OSError as exc:
        raise UserError(f"{path}: cannot read it ({exc.strerror or exc.__class__.__name__}); check the path") from exc
    if len(data) > limit:
        raise UserError(f"{path}: larger than {limit // 2**20} MiB; a {what} may be at most {limit // 2**20} MiB")
    return data


def decode_utf8(data: bytes, path: Path, what: str = "file") -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not valid UTF-8 (byte {exc.start}); save the {what} as UTF-8") from exc


def _weigh(root: yaml.Node, budget: int, path: Path) -> None:
    """Refuse a node graph whose tree weighs more than ``budget`` or nests deeper than :data:`MAX_DEPTH`.

    Post-order, iterative and memoised by node identity, so it is linear in the number of distinct nodes:
    an alias bomb is weighed in microseconds, never expanded. Height is memoised the same way, because
    chained aliases can nest deeper than the text looks.
    """
    seen: dict[int, tuple[int, int]] = {}  # id(node) -> (weight, height)
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    on_path: set[int] = set()
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        line = node.start_mark.line + 1
        if children_done:
            on_path.discard(key)
            parts = [seen[id(child)] for child in _children(node)]
            weight = 1 + sum(w for w, _ in parts)
            height = 1 + max((h for _, h in parts), default=0)
            seen[key] = (weight, height)
            if weight > budget:
                raise UserError(
                    f"{path}:{line}: YAML aliases (*name) expand this file to more than {budget:,} values; "
                    "write the repeated values out, or use fewer aliases"
                )
            if height > MAX_DEPTH:
                raise UserError(f"{path}:{line}: nested more than {MAX_DEPTH} levels deep; flatten the structure")
            continue
        if key in seen:
            continue
        if isinstance(node, yaml.ScalarNode):
            seen[key] = (1 + len(node.value), 1)
            continue
        if key in on_path:  # PyYAML refuses recursive aliases already; belt and braces
            raise UserError(f"{path}:{line}: a YAML alias refers to itself; remove the cycle")
        on_path.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in _children(node) if id(child) not in seen)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def load_yaml(text: str, path: Path) -> tuple[Any, yaml.Node | None]:
    """Parse ``text`` once: (data, root node for line numbers), bounded as the module says."""
    budget = max(ALIAS_EXPANSION * len(text), MIN_EXPANSION_BUDGET)
    try:
        loader = _LOADER(text)
        try:
            root = loader.get_single_node()
            if root is None:
                return None, None
            _weigh(root, budget, path)
            data = loader.construct_document(root)
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        detail = " ".join(str(getattr(exc, "problem", None) or exc).split())
        raise UserError(f"{where}: malformed YAML ({detail})") from exc
    except RecursionError:
        raise UserError(f"{path}: nested too deeply to parse; flatten the structure") from None
    check_finite(data, root, path)
    return data, root


def check_finite(data: Any, root: yaml.Node | None, path: Path) -> None:
    """Refuse NaN and infinities anywhere in ``data`` (keys included), naming the field and its line."""
    stack: list[tuple[Any, tuple[Any, ...]]] = [(data, ())]
    while stack:
        value, loc = stack.pop()
        if isinstance(value, float) and not math.isfinite(value):
            field = ".".join(map(str, loc)) or "(top level)"
            line = line_of(root, loc)
            where = f"{path}:{line}" if line else str(path)
            raise UserError(f"{where}: field '{field}': {value} is not a finite number; give a finite value")
        if isinstance(value, dict):
            for key, item in value.items():
                stack.append((key, loc))
                stack.append((item, (*loc, key)))
        elif isinstance(value, (list, tuple)):
            stack.extend((item, (*loc, index)) for index, item in enumerate(value))


def line_of(node: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """1-based line of the YAML node at location ``loc`` (the deepest node found on the way)."""
    line = None
    for key in loc:
        if node is None:
            break
        line = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            node = next((v for k, v in node.value if getattr(k, "value", None) == key), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            node = node.value[key]
        else:
            node = None
    if node is not None:
        line = node.start_mark.line + 1
    return line


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not a finite number")


def load_json_line(line: str) -> Any:
    """``json.loads`` without NaN/Infinity and with deep nesting as a ValueError, not a RecursionError."""
    try:
        return json.loads(line, parse_constant=_refuse_constant)
    except RecursionError:
        raise ValueError("nested too deeply") from None
