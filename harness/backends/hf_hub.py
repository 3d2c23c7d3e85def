"""Hugging Face Hub access shared by the ``hf`` backend and the study-layout loader.

Environment variables are read when a model is *loaded*, not when huggingface_hub is imported:
huggingface_hub freezes ``HF_HOME``/``HF_HUB_OFFLINE`` into module constants at import time, and a
harness process (or a test) may set them later. So the cache directory and the offline flag are
computed here and passed explicitly to ``snapshot_download``. Tokens are left to huggingface_hub
(``HF_TOKEN`` or the stored ``hf auth login`` token) unless the caller passes one.

Every failure becomes a one-line :class:`~harness.errors.UserError` naming the model and the fix.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from harness.errors import UserError

_TRUE = {"1", "true", "yes", "on"}
COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class Snapshot:
    """A resolved repository snapshot on local disk."""

    path: Path
    repo_id: str | None  # None for a plain local directory
    revision: str | None  # the resolved commit hash, when it came from the Hub cache


def hub_cache_dir() -> Path:
    """The Hub cache in force now: ``HF_HUB_CACHE``, else ``HF_HOME/hub``, else huggingface_hub's default."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def hub_offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` (or the legacy ``TRANSFORMERS_OFFLINE``) is set now or was at import."""
    from huggingface_hub import constants

    env = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return env.strip().lower() in _TRUE or bool(constants.HF_HUB_OFFLINE)


def split_repo_spec(target: str) -> tuple[str, str]:
    """``ORG/NAME[@REVISION]`` -> (repo_id, revision); revision defaults to ``main``."""
    repo_id, _, revision = target.partition("@")
    return repo_id, revision or "main"


def is_local_target(target: str) -> bool:
    """A local directory rather than a Hub id: an absolute, ``./``, ``../`` or ``~`` path, or an existing dir.

    ``org/name`` is ambiguous (it could be a relative path); an existing directory wins, as in transformers.
    """
    return target.startswith(("/", "./", "../", "~", ".\\")) or Path(target).expanduser().is_dir()


def offline_cache_message(spec: str, repo_id: str, revision: str) -> str:
    return (
        f"model {spec}: {repo_id}@{revision} is not in the Hugging Face cache {hub_cache_dir()} and HF_HUB_OFFLINE is "
        f"set; download it once online (unset HF_HUB_OFFLINE, or run: hf download {repo_id} --revision {revision})"
    )


def check_cached_when_offline(spec: str, repo_id: str, revision: str) -> None:
    """Offline, a Hub model must already be in the cache: checked before a run directory exists, so an
    uncached model costs one line, not an empty run directory and report. Online nothing is checked here
    (the download decides). Reads only the cache's layout (``refs/<revision>`` -> ``snapshots/<commit>``)."""
    if not hub_offline():
        return
    from huggingface_hub.file_download import repo_folder_name

    repo_dir = hub_cache_dir() / repo_folder_name(repo_id=repo_id, repo_type="model")
    ref = repo_dir / "refs" / revision
    try:
        commit = ref.read_text().strip() if ref.is_file() else revision
    except OSError:
        commit = revision
    if not commit or not (repo_dir / "snapshots" / commit).is_dir():
        raise UserError(offline_cache_message(spec, repo_id, revision))


def download_snapshot(
    spec: str,
    repo_id: str,
    revision: str,
    *,
    allow_patterns: list[str] | None = None,
    ignore_patterns: list[str] | None = None,
    token: str | None = None,
) -> Snapshot:
    """Resolve ``repo_id@revision`` to a cached snapshot, downloading unless offline.

    The returned path is ``.../models--org--name/snapshots/<commit>``: the directory name *is* the
    resolved commit, which is what gets recorded, so a run can be reproduced with ``@<commit>``.
    """
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    offline = hub_offline()
    cache = hub_cache_dir()
    try:
        path = snapshot_download(
            repo_id,
            revision=revision,
            cache_dir=str(cache),
            local_files_only=offline,
            allow_patterns=allow_patterns,
            ignore_patterns=ignore_patterns,
            token=token,
        )
    except HFValidationError as exc:
        raise UserError(
            f"model {spec}: {repo_id!r} is not a valid Hub id; use hf:ORG/NAME[@REVISION] or hf:/path/to/dir"
        ) from exc
    except GatedRepoError as exc:
        raise UserError(
            f"model {spec}: {repo_id} is gated; accept its terms on the Hub, then log in (hf auth login) or set HF_TOKEN"
        ) from exc
    except RevisionNotFoundError as exc:
        raise UserError(
            f"model {spec}: revision {revision!r} does not exist in {repo_id}; use a branch, tag or commit hash that does"
        ) from exc
    except RepositoryNotFoundError as exc:
        raise UserError(
            f"model {spec}: Hub repository {repo_id} not found (or private); check the name, or log in (hf auth login) / set HF_TOKEN"
        ) from exc
    except LocalEntryNotFoundError as exc:
        if offline:
            raise UserError(offline_cache_message(spec, repo_id, revision)) from exc
        raise UserError(
            f"model {spec}: cannot reach the Hugging Face Hub and {repo_id}@{revision} is not cached in {cache}; "
            "check the network, or point HF_HOME at a cache that has it"
        ) from exc
    except OSError as exc:  # connection errors, disk full, permissions: one line, with the cause
        raise UserError(
            f"model {spec}: cannot fetch {repo_id}@{revision} ({exc.__class__.__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
            "check the network and HF_HOME, or use HF_HUB_OFFLINE=1 with a filled cache"
        ) from exc
    snapshot = Path(path)
    commit = snapshot.name if COMMIT_RE.match(snapshot.name) else None
    return Snapshot(path=snapshot, repo_id=repo_id, revision=commit)


def file_sha256(path: Path) -> str:
    """SHA-256 of a file; a Hub-cache symlink to an LFS blob is named by that hash already, so reuse it."""
    if path.is_symlink():
        blob = Path(os.path.realpath(path))
        if SHA256_RE.match(blob.name) and blob.parent.name == "blobs":
            return blob.name
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def files_sha256(paths: list[Path]) -> str | None:
    """One hash for a set of files: the file's own hash for one file, else a hash over ``name:sha`` lines."""
    paths = sorted(paths, key=lambda p: p.name)
    if not paths:
        return None
    if len(paths) == 1:
        return file_sha256(paths[0])
    lines = "".join(f"{p.name}:{file_sha256(p)}\n" for p in paths)
    return hashlib.sha256(lines.encode()).hexdigest()
