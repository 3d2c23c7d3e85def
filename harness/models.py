"""Model specs -> backends: ``prefix:rest`` picks a backend by name, bare specs go to the first that claims them."""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch

from harness.errors import UserError, did_you_mean
from harness.plugins import Registry
from harness.types import LoadOptions, Model
from harness.validation import check_option_keys


def split_spec(spec: str, registry: Registry) -> tuple[str | None, str]:
    """(backend name, spec) — the backend is None when the spec has no known prefix."""
    if ":" in spec:
        prefix = spec.split(":", 1)[0]
        if prefix in registry.backends:
            return prefix, spec
        if len(prefix) > 1 and "/" not in prefix and "\\" not in prefix:  # 'C:' drive letters are not prefixes
            raise UserError(
                f"model {spec}: unknown backend {prefix!r}{did_you_mean(prefix, registry.backends)}; "
                f"known: {', '.join(registry.backends)}"
            )
    return None, spec


def resolve_backend(spec: str, registry: Registry):
    name, spec = split_spec(spec, registry)
    if name is not None:
        return registry.backends[name]
    for backend in registry.backends.values():
        if backend.claims(spec):
            return backend
    path = Path(spec).expanduser()
    if path.is_dir():
        present = sorted(p.name for p in path.iterdir())[:8]
        raise UserError(
            f"model {spec!r}: a directory no backend recognises (it has {present}); a tinylm checkpoint needs "
            "config.json, model.safetensors or model.pt, and tokenizer.json; a transformers one needs config.json "
            "with a model_type"
        )
    if "/" in spec and not path.exists() and ":" not in spec:
        raise UserError(
            f"model {spec!r}: no such directory; check the path, or write hf:{spec} for a Hugging Face Hub model"
        )
    aliases = [s for b in registry.backends.values() for s, _ in b.available()]
    raise UserError(
        f"model {spec!r}: no backend recognises it{did_you_mean(spec, aliases)}; 'harness models' lists valid specs"
    )


def check_specs(specs: list[str], registry: Registry, model_options: dict[str, str], judge: str | None = None) -> None:
    """What ``harness run`` checks before it creates anything: every spec resolves to a backend, and every
    ``--model-option`` key is read by one of the run's backends (the judge's included, it gets the same
    options). Spec syntax and option values are the backends' ``check_options``, called next."""
    backends = [resolve_backend(spec, registry) for spec in specs]
    if judge:
        with contextlib.suppress(UserError):  # a bad judge spec is reported with the suite's resources
            backends.append(resolve_backend(judge, registry))
    check_option_keys(model_options, backends or list(registry.backends.values()))


def check_spec(spec: str, registry: Registry, options: LoadOptions) -> None:
    """Resolve ``spec`` and let its backend refuse bad syntax or options (``Backend.check_options``)."""
    backend = resolve_backend(spec, registry)
    check = getattr(backend, "check_options", None)
    if check is not None:
        check(spec, options)


def load_model(spec: str, registry: Registry, options: LoadOptions, name: str | None = None) -> Model:
    """Load ``spec`` with its backend and apply thread settings; ``name`` labels it in results."""
    if options.threads:
        torch.set_num_threads(options.threads)
    model = resolve_backend(spec, registry).load(spec, options)
    if name:
        model.info.name = name
    return model
