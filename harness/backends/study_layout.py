"""The study's Hub repository layout, loaded into tinylm_ref: ``.pt`` state dicts + tokenizer JSON + config.

The study published ``deycoding/deycoding-tiny-language-model`` with, per size, a PyTorch
state dict (``tinystories_10m_final_model.pt``), a tokenizers JSON (``tinystories_10m_tokenizer.json``)
and "a config file with the architecture parameters" whose name and format it does not give. So
nothing here hard-codes a format:

* file names are patterns with a ``{size}`` placeholder, tried in order and for each spelling of
  the size (``2.5m``, ``2.5M``, ``2_5m``, ``2p5m``...);
* the config may be JSON, YAML or Python-style ``key = value`` lines (read with ``ast``, never
  executed), flat or keyed by size; known aliases (``d_model``, ``n_layer``, ``block_size``...) map to
  tinylm_ref field names and anything else is ignored and reported;
* whatever the weights' shapes say (vocabulary, width, depth, FFN width, context) wins over a
  missing config field, and disagrees loudly with a wrong one; ``n_heads`` cannot be read from
  shapes, so it comes from the config, else from the size's preset (the study's Table 1);
* a key map renames state-dict keys whose names differ from tinylm_ref's (prefix renames, or
  ``re:`` regex renames); ``module.`` / ``_orig_mod.`` wrappers are stripped, and separate
  q/k/v or gate/up projections mapped to ``attn.q|k|v`` / ``ffn.gate|up`` are fused.

Errors are one-line :class:`UserError`\\ s naming the missing file or the unmatched keys, with a
suggested key map when the mismatch looks like a renamed prefix.
"""

from __future__ import annotations

import ast
import json
import re
from collections import Counter
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer

from harness.backends.hf_hub import download_snapshot, file_sha256, is_local_target, split_repo_spec
from harness.errors import UserError
from harness.types import LoadOptions
from tinylm_ref.checkpoint import CheckpointError, compare_shapes, load_pickle_state
from tinylm_ref.config import MAX_CONFIG_BYTES, PRESETS, ModelConfig, load_config_json
from tinylm_ref.model import LLM

STUDY_REPO = "deycoding/deycoding-tiny-language-model"
CONFIG_ALIASES: dict[str, tuple[str, ...]] = {
    "vocab_size": ("vocab_size", "n_vocab", "vocab"),
    "dim": ("dim", "d_model", "n_embd", "hidden_size", "embed_dim", "emb_dim", "embedding_dim", "n_embed"),
    "n_layers": ("n_layers", "n_layer", "num_layers", "num_hidden_layers", "layers", "depth"),
    "n_heads": ("n_heads", "n_head", "num_heads", "num_attention_heads", "heads"),
    "ffn_dim": ("ffn_dim", "hidden_dim", "intermediate_size", "d_ff", "ffn_hidden", "mlp_dim", "ffn_hidden_dim"),
    "max_seq_len": (
        "max_seq_len",
        "context_length",
        "block_size",
        "seq_len",
        "max_len",
        "n_ctx",
        "n_positions",
        "max_position_embeddings",
        "context_len",
        "ctx_len",
    ),
    "tie_weights": ("tie_weights", "tie_word_embeddings", "tied_embeddings", "tie_embeddings"),
}
WRAPPER_PREFIXES = ("_orig_mod.", "module.")  # torch.compile and DistributedDataParallel
STATE_KEYS = ("model_state_dict", "state_dict", "model", "module")


@dataclass(frozen=True)
class StudyLayout:
    """Where the files of one size live and how their keys map; every field has a documented default.

    Patterns are tried in order; ``{size}`` is replaced by each spelling of the size.
    ``key_map`` maps old -> new: a plain key is a prefix rename, a key starting with ``re:`` is a
    regular expression substituted over the whole key. The first matching entry wins.
    """

    weights: tuple[str, ...] = ("tinystories_{size}_final_model.pt", "tinystories_{size}_model.pt", "{size}/model.pt")
    tokenizer: tuple[str, ...] = (
        "tinystories_{size}_tokenizer.json",
        "{size}/tokenizer.json",
        "tinystories_tokenizer.json",
    )
    config: tuple[str, ...] = (
        "tinystories_{size}_config.json",
        "config_{size}.json",
        "{size}/config.json",
        "config.json",
        "configs.json",
        "config.yaml",
        "config.yml",
        "config.py",
        "config.txt",
    )
    key_map: dict[str, str] = field(default_factory=dict)
    config_required: bool = False  # True: a missing config file is an error instead of "shapes + preset"

    @classmethod
    def from_options(cls, extra: dict[str, Any] | None) -> StudyLayout:
        """``LoadOptions.extra["study_layout"]``: {weights, tokenizer, config: str | list, key_map: dict | JSON path}."""
        raw = (extra or {}).get("study_layout") or {}
        if isinstance(raw, str):  # --model-option study_layout='{"weights": "..."}'
            from harness.yaml_safe import load_json_line

            try:
                raw = load_json_line(raw)
            except ValueError:
                raw = None
        if not isinstance(raw, dict):
            raise UserError(
                "study_layout option: expected a JSON object such as "
                '\'{"weights": "model_{size}.pt", "key_map": {"old.": "new."}}\''
            )
        given = dict(raw)
        unknown = sorted(set(given) - {f.name for f in fields(cls)})
        if unknown:
            raise UserError(
                f"study_layout option: unknown key(s) {unknown}; use weights, tokenizer, config, key_map, config_required"
            )
        for name in ("weights", "tokenizer", "config"):
            if isinstance(given.get(name), str):
                given[name] = (given[name],)
            elif name in given:
                value = given[name]
                if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
                    raise UserError(
                        f"study_layout {name}: expected a file pattern or a list of them, got {value!r:.60}"
                    )
                given[name] = tuple(value)
        if isinstance(given.get("key_map"), str):
            path = Path(given["key_map"]).expanduser()
            try:
                given["key_map"] = load_config_json(path)
            except ValueError as exc:
                raise UserError(
                    f"study_layout key_map: cannot read {path} as a JSON object ({exc}); "
                    'give a JSON file of {"old_prefix": "new_prefix"}'
                ) from exc
        key_map = given.get("key_map", {})
        if not isinstance(key_map, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in key_map.items()
        ):
            raise UserError(
                'study_layout key_map: expected {"old_prefix": "new_prefix", ...} with string keys and values'
            )
        if not isinstance(given.get("config_required", False), bool):
            raise UserError("study_layout config_required: expected true or false")
        return cls(**given)


@dataclass
class StudyCheckpoint:
    """A loaded study-layout model. Unpacks as ``model, tokenizer, source, weights_sha256``."""

    model: LLM
    tokenizer: Tokenizer
    source: str  # "repo@commit/file.pt" or a local path
    weights_sha256: str
    tokenizer_sha256: str
    revision: str | None  # the resolved Hub commit, None for a local directory
    config: ModelConfig
    files: dict[str, str]  # role -> file name used ("weights", "tokenizer", "config")
    notes: list[str] = field(default_factory=list)  # defaults taken, keys ignored, wrappers stripped

    def __iter__(self):
        return iter((self.model, self.tokenizer, self.source, self.weights_sha256))


def size_spellings(size: str) -> list[str]:
    """``2.5m`` -> 2.5m, 2.5M, 2_5m, 2_5M, 2p5m, 2p5M, 25m, 25M (file names in the wild use all of these)."""
    base = size.strip().lower()
    variants = [base, base.replace(".", "_"), base.replace(".", "p"), base.replace(".", "")]
    out: list[str] = []
    for v in variants:
        for s in (v, v.upper() if v.endswith("m") else v, v[:-1] + "M" if v.endswith("m") else v):
            if s not in out:
                out.append(s)
    return out


def _candidates(patterns: tuple[str, ...], size: str) -> list[str]:
    out: list[str] = []
    for pattern in patterns:
        for spelling in size_spellings(size):
            name = pattern.replace("{size}", spelling)
            if name not in out:
                out.append(name)
    return out


def _find(root: Path, patterns: tuple[str, ...], size: str) -> Path | None:
    for name in _candidates(patterns, size):
        if (root / name).is_file():
            return root / name
    return None


# --- config -----------------------------------------------------------------------------------------


def _python_assignments(text: str) -> dict[str, Any]:
    """Top-level ``name = literal`` statements; anything not a literal is skipped, nothing is executed."""
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError, RecursionError, MemoryError):  # NUL bytes, absurd nesting
        return {}
    values: dict[str, Any] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                values[node.targets[0].id] = ast.literal_eval(node.value)
            except (ValueError, SyntaxError, TypeError, RecursionError, MemoryError):
                continue
    return values


def _section_for_size(text: str, size: str) -> str:
    """In a file of ``# 10M Model Config`` sections (the study's blog style), the section of ``size``."""
    spellings = {s.lower() for s in size_spellings(size)}
    sections: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        if line.lstrip().startswith("#"):
            sections.append((line.lower(), []))
        elif sections:
            sections[-1][1].append(line)
    for header, body in sections:
        if any(re.search(rf"(?<![\w.]){re.escape(s)}(?![\w.])", header) for s in spellings):
            return "\n".join(body)
    return text


def read_config_file(path: Path, size: str) -> dict[str, Any]:
    """The raw key/value pairs for ``size`` from a JSON, YAML or Python-style config file.

    Read with a size cap; YAML through the bounded loader (no alias bombs), JSON without NaN."""
    from harness.yaml_safe import decode_utf8, load_json_line, load_yaml, read_capped

    text = decode_utf8(read_capped(path, "config file", MAX_CONFIG_BYTES), path, "config file")
    data: Any
    if path.suffix == ".json":
        try:
            data = load_json_line(text)
        except ValueError as exc:
            detail = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
            raise UserError(
                f"{path.name}: not valid JSON ({detail}); fix the file or set the study_layout config pattern"
            ) from exc
    elif path.suffix in (".yaml", ".yml"):
        data, _ = load_yaml(text, path)
    else:
        data = _python_assignments(_section_for_size(text, size))
    if not isinstance(data, dict):
        raise UserError(f"{path.name}: expected a mapping of architecture fields, got {type(data).__name__}")
    for spelling in size_spellings(size):  # {"10m": {...}, "5m": {...}} or {"10M": {...}}
        for key, value in data.items():
            if isinstance(value, dict) and str(key).lower() in (spelling.lower(), f"tinystories_{spelling.lower()}"):
                return value
    # A top-level assignment holding the per-size table: CONFIGS = {"10m": {...}}
    for value in data.values():
        if isinstance(value, dict):
            for key, inner in value.items():
                if isinstance(inner, dict) and str(key).lower() in {s.lower() for s in size_spellings(size)}:
                    return inner
    return data


def normalise_config(raw: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Map aliases to ModelConfig field names; return (fields, ignored keys)."""
    alias_to_field = {alias: name for name, aliases in CONFIG_ALIASES.items() for alias in aliases}
    out: dict[str, Any] = {}
    ignored: list[str] = []
    for key, value in raw.items():
        name = alias_to_field.get(str(key).lower())
        if name is None:
            ignored.append(str(key))
        else:
            out[name] = _as_bool(key, value) if name == "tie_weights" else _as_int(key, value)
    return out, ignored


def _as_int(key: Any, value: Any) -> int:
    """An architecture integer from a foreign config: ints, integral floats (``384.0``) and digit strings."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit() and len(value.strip()) < 20:
        return int(value.strip())
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise UserError(f"config key {key!r}: expected an integer, got {value!r:.40}; fix the config file")


def _as_bool(key: Any, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, str)) and str(value).strip().lower() in ("0", "1", "true", "false", "yes", "no"):
        return str(value).strip().lower() in ("1", "true", "yes")
    raise UserError(f"config key {key!r}: expected true or false, got {value!r:.40}; fix the config file")


# --- state dict -------------------------------------------------------------------------------------


def apply_key_map(state: dict[str, torch.Tensor], key_map: dict[str, str]) -> dict[str, torch.Tensor]:
    """Rename keys: prefix renames, or ``re:PATTERN`` -> replacement (``re.sub``); the first match wins."""
    try:
        compiled = [(re.compile(old[3:]), new) if old.startswith("re:") else (old, new) for old, new in key_map.items()]
    except re.error as exc:
        raise UserError(f"study_layout key_map: not a regular expression ({exc}); fix the 're:' entry") from exc
    renamed: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        for old, new in compiled:
            if isinstance(old, re.Pattern):
                if old.search(key):
                    try:
                        key = old.sub(new, key)
                    except (re.error, IndexError) as exc:  # a bad group reference in the replacement
                        raise UserError(f"study_layout key_map: replacement {new!r} is invalid ({exc})") from exc
                    break
            elif key.startswith(old):
                key = new + key[len(old) :]
                break
        renamed[key] = value
    return renamed


def _fuse_split_projections(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Concatenate separately stored q/k/v (and gate/up) projections into tinylm_ref's fused ones."""
    for pattern, parts, fused in (
        (r"^(blocks\.\d+\.attn\.)q\.weight$", ("q", "k", "v"), "qkv"),
        (r"^(blocks\.\d+\.ffn\.)gate\.weight$", ("gate", "up"), "gate_up"),
    ):
        for key in [k for k in state if re.match(pattern, k)]:
            prefix = re.match(pattern, key).group(1)
            names = [f"{prefix}{p}.weight" for p in parts]
            if all(n in state for n in names):
                state[f"{prefix}{fused}.weight"] = torch.cat([state.pop(n) for n in names], dim=0)
    return state


def extract_state_dict(obj: Any, path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any] | None]:
    """The tensors of a ``.pt`` file, unwrapping training checkpoints ({"model_state_dict": ..., "config": ...})."""
    if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return dict(obj), None
    if isinstance(obj, dict):
        embedded = next(
            (obj[k] for k in ("config", "model_config", "model_args", "args") if isinstance(obj.get(k), dict)), None
        )
        for key in STATE_KEYS:
            inner = obj.get(key)
            if isinstance(inner, dict) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
                return dict(inner), embedded
    raise UserError(
        f"{path.name}: not a state dict (expected a dict of tensors, or one under {'/'.join(STATE_KEYS)}); "
        "re-save it with torch.save(model.state_dict(), ...)"
    )


def strip_wrappers(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    stripped = []
    for prefix in WRAPPER_PREFIXES:
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items()}
            stripped.append(prefix)
    return state, stripped


def suggest_key_map(missing: list[str], unexpected: list[str]) -> dict[str, str]:
    """Prefix renames that turn unexpected keys into missing ones, chosen greedily by how many keys each fixes.

    Each (unexpected, missing) pair votes for the rename of everything before their longest common
    dotted suffix (``layers.0.attn.qkv.weight`` / ``blocks.0.attn.qkv.weight`` vote ``layers.`` -> ``blocks.``).
    """
    todo_old, todo_new = set(unexpected), set(missing)
    suggestion: dict[str, str] = {}
    while todo_old and len(suggestion) < 3:
        votes: Counter[tuple[str, str]] = Counter()
        for old in sorted(todo_old):  # sorted: ties break the same way every run
            old_parts = old.split(".")
            for new in sorted(todo_new):
                new_parts = new.split(".")
                n = 0
                while n < min(len(old_parts), len(new_parts)) and old_parts[-1 - n] == new_parts[-1 - n]:
                    n += 1
                if 0 < n < len(old_parts) and n < len(new_parts):
                    votes[(".".join(old_parts[:-n]) + ".", ".".join(new_parts[:-n]) + ".")] += 1
        if not votes:
            break
        (old_prefix, new_prefix), _ = votes.most_common(1)[0]
        fixed = {k for k in todo_old if k.startswith(old_prefix) and new_prefix + k[len(old_prefix) :] in todo_new}
        if not fixed:
            break
        suggestion[old_prefix] = new_prefix
        todo_old -= fixed
        todo_new -= {new_prefix + k[len(old_prefix) :] for k in fixed}
    return suggestion


def infer_from_shapes(state: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Architecture fields the tensors themselves pin down (n_heads is not one of them)."""
    out: dict[str, Any] = {}
    if "tok_emb.weight" in state:
        out["vocab_size"], out["dim"] = map(int, state["tok_emb.weight"].shape)
    if "pos_emb.weight" in state:
        out["max_seq_len"] = int(state["pos_emb.weight"].shape[0])
    layers = {int(m.group(1)) for k in state if (m := re.match(r"^blocks\.(\d+)\.", k))}
    if layers:
        out["n_layers"] = max(layers) + 1
    if "blocks.0.ffn.gate_up.weight" in state:
        out["ffn_dim"] = int(state["blocks.0.ffn.gate_up.weight"].shape[0]) // 2
    if "head.weight" in state and "tok_emb.weight" in state:
        out["tie_weights"] = bool(torch.equal(state["head.weight"], state["tok_emb.weight"]))
    return out


def build_config(
    size: str, from_shapes: dict[str, Any], from_file: dict[str, Any], where: str, notes: list[str]
) -> ModelConfig:
    """Shapes > config file > the size's preset; a config value that contradicts the shapes is an error."""
    for name, value in from_file.items():
        if name in from_shapes and from_shapes[name] != value:
            raise UserError(
                f"{where}: {name} = {value}, but the weights have {name} = {from_shapes[name]}; "
                "fix the config or point the study_layout config pattern at the right file"
            )
    preset = PRESETS.get(size.lower())
    merged: dict[str, Any] = {}
    for name in ("vocab_size", "dim", "n_layers", "n_heads", "ffn_dim", "max_seq_len", "tie_weights"):
        if name in from_file:
            merged[name] = from_file[name]
        elif name in from_shapes:
            merged[name] = from_shapes[name]
        elif preset is not None:
            merged[name] = getattr(preset, name)
            notes.append(f"{name}={merged[name]} from the {size} preset")
        elif name != "tie_weights":
            raise UserError(
                f"{where}: no {name} in the config and no {size!r} preset to take it from; add it to the config"
            )
    try:
        return ModelConfig(**merged)
    except ValueError as exc:
        raise UserError(f"{where}: {exc}") from exc


def load_study_layout(
    repo_dir_or_id: str = STUDY_REPO,
    size: str = "10m",
    options: LoadOptions | None = None,
    layout: StudyLayout | None = None,
) -> StudyCheckpoint:
    """Load one size of a study-layout repository (Hub id ``org/name[@rev]`` or a local directory).

    Only that size's files are downloaded; with ``HF_HUB_OFFLINE=1`` the Hub cache must hold them.
    ``options`` (optional) supplies the device and ``extra["study_layout"]`` (see :class:`StudyLayout`);
    an explicit ``layout`` wins over the options. The model stays float32 (tinylm_ref computes in fp32).
    """
    layout = layout or StudyLayout.from_options(options.extra if options else None)
    label = f"study layout {repo_dir_or_id} ({size})"
    if is_local_target(repo_dir_or_id):
        root, revision, repo_id = Path(repo_dir_or_id).expanduser(), None, None
        if not root.is_dir():
            raise UserError(f"{label}: directory {root} does not exist")
    else:
        repo_id, rev = split_repo_spec(repo_dir_or_id)
        wanted = [
            *_candidates(layout.weights, size),
            *_candidates(layout.tokenizer, size),
            *_candidates(layout.config, size),
        ]
        snapshot = download_snapshot(label, repo_id, rev, allow_patterns=wanted)
        root, revision = snapshot.path, snapshot.revision
    where = f"{repo_id}@{revision}" if repo_id else str(root)

    weights = _find(root, layout.weights, size)
    if weights is None:
        raise UserError(
            f"{label}: no weights file in {where} (tried {', '.join(_candidates(layout.weights, size)[:4])}...); "
            "set the study_layout 'weights' pattern (docs/backends.md)"
        )
    tok_path = _find(root, layout.tokenizer, size)
    if tok_path is None:
        raise UserError(
            f"{label}: no tokenizer file in {where} (tried {', '.join(_candidates(layout.tokenizer, size)[:4])}...); "
            "set the study_layout 'tokenizer' pattern"
        )
    cfg_path = _find(root, layout.config, size)
    if cfg_path is None and layout.config_required:
        raise UserError(
            f"{label}: no config file in {where} (tried {', '.join(_candidates(layout.config, size)[:4])}...); "
            "set the study_layout 'config' pattern"
        )

    notes: list[str] = []
    try:  # data only, memory-mapped: a pickle that wants code is refused, with safetensors as the way out
        obj = load_pickle_state(weights)
    except CheckpointError as exc:
        raise UserError(f"{label}: {exc}") from exc
    state, embedded_config = extract_state_dict(obj, weights)
    state, stripped = strip_wrappers(state)
    notes += [f"stripped {p!r} from every key" for p in stripped]
    state = _fuse_split_projections(apply_key_map(state, layout.key_map))

    raw: dict[str, Any] = {}
    if embedded_config:
        raw.update(embedded_config)
        notes.append(f"config embedded in {weights.name}")
    if cfg_path is not None:
        raw.update(read_config_file(cfg_path, size))
    else:
        notes.append("no config file; architecture from the weights' shapes and the preset")
    from_file, ignored = normalise_config(raw)
    if ignored:
        notes.append(f"config keys ignored: {', '.join(sorted(ignored))}")
    config = build_config(
        size, infer_from_shapes(state), from_file, f"{label}: {cfg_path.name if cfg_path else weights.name}", notes
    )

    if config.tie_weights and "head.weight" not in state and "tok_emb.weight" in state:
        state["head.weight"] = state["tok_emb.weight"]
    # bounded by the file, whatever the config claims; nothing is allocated until the shapes agree
    limit = 2 * len(state) + 64
    missing, unexpected, wrong = compare_shapes(config, {k: tuple(v.shape) for k, v in state.items()}, limit)
    if missing or unexpected:
        hint = suggest_key_map(missing, unexpected)
        fix = f"try key_map {json.dumps(hint)}" if hint else "pass a study_layout key_map"
        raise UserError(
            f"{label}: {weights.name} does not match tinylm_ref: {len(missing)} missing key(s) {missing[:4]}, "
            f"{len(unexpected)} unexpected {unexpected[:4]}; {fix} (docs/backends.md#key-mapping)"
        )
    if wrong:
        key, found, want = wrong[0]
        raise UserError(
            f"{label}: {weights.name}: {key} has shape {found} but the config gives "
            f"{want}; fix the config ({cfg_path.name if cfg_path else 'none found'})"
        )
    model = LLM(config)
    model.load_state_dict({k: v.float() for k, v in state.items()})
    model.eval()
    if options is not None and options.device not in ("auto", "cpu"):
        model.to(options.device)
    elif options is not None and options.device == "auto" and torch.cuda.is_available():
        model.to("cuda")

    try:
        tokenizer = Tokenizer.from_file(str(tok_path))
    except Exception as exc:
        raise UserError(
            f"{label}: {tok_path.name} is not a tokenizers JSON file ({exc.__class__.__name__}); re-download it"
        ) from exc
    if tokenizer.get_vocab_size() > config.vocab_size:
        raise UserError(
            f"{label}: {tok_path.name} has {tokenizer.get_vocab_size()} tokens but the model's vocab_size is "
            f"{config.vocab_size}; use the tokenizer of the same size"
        )
    files = {"weights": weights.name, "tokenizer": tok_path.name, **({"config": cfg_path.name} if cfg_path else {})}
    source = f"{repo_id}@{revision}/{weights.name}" if repo_id else str(weights.resolve())
    return StudyCheckpoint(
        model=model,
        tokenizer=tokenizer,
        source=source,
        weights_sha256=file_sha256(weights),
        tokenizer_sha256=file_sha256(tok_path),
        revision=revision,
        config=config,
        files=files,
        notes=notes,
    )
