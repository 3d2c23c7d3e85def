"""Reference texts for held-out metrics: a local TinyStories-format file, or a Hub dataset file."""

from __future__ import annotations

from itertools import islice
from pathlib import Path

from harness.errors import UserError
from harness.suite import Reference
from tinylm_ref.data import iter_stories


def load_reference_texts(reference: Reference, suite_path: Path) -> list[str]:
    if reference.path is not None:
        path = Path(reference.path)
        if not path.is_absolute():
            path = (suite_path.parent / path).resolve()
        if not path.is_file():
            raise UserError(
                f"{suite_path}: field 'reference.path': {path} not found; point it at a text file "
                "(TinyStories format: stories separated by <|endoftext|> lines)"
            )
    else:
        try:
            from huggingface_hub import hf_hub_download

            path = Path(hf_hub_download(reference.hub_dataset, reference.hub_file, repo_type="dataset"))
        except Exception as exc:
            raise UserError(
                f"{suite_path}: field 'reference': cannot fetch {reference.hub_dataset}/{reference.hub_file} "
                f"({exc.__class__.__name__}); go online once to cache it, or use 'path'"
            ) from exc
    try:
        texts = list(islice(iter_stories(path), reference.max_texts))
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not valid UTF-8; save the reference file as UTF-8") from exc
    if not texts:
        raise UserError(f"{path}: no texts found for field 'reference'")
    return texts
