"""The plugin manager: built-in and third-party plugins register through the same pluggy hooks.

Discovery is lazy and happens once per process: built-in modules, then the ``harness`` entry-point
group (what ``pip install harness-foo`` brings), then ``--plugins-dir`` / ``HARNESS_PLUGINS_DIR``.
A plugin that fails to import is named in a warning and skipped; two plugins registering the same
backend or metric name is an error naming both.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import warnings
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pluggy

from harness import hookspecs
from harness.errors import UserError, did_you_mean
from harness.metrics import BUILTIN_METRIC_MODULES
from harness.types import Backend, Metric

BUILTIN_BACKEND_MODULES = (
    "harness.backends.tinylm",
    "harness.backends.onnx",
    "harness.backends.gguf",
    "harness.backends.hf",
    "harness.backends.openai_api",
)
BUILTIN_TRACKER_MODULES = ("harness.tracking.mlflow_tracker",)
ENTRY_POINT_GROUP = "harness"
PLUGINS_DIR_ENV = "HARNESS_PLUGINS_DIR"


class PluginLoadWarning(UserWarning):
    """A plugin could not be imported or registered; the run continues without it."""


@dataclass
class PluginInfo:
    name: str
    origin: str  # "builtin", "entry point (dist version)" or a file path
    version: str | None = None
    registered: list[str] = field(default_factory=list)


@dataclass
class Registry:
    """Everything the plugins registered, each item remembered with the plugin that registered it."""

    pm: pluggy.PluginManager
    plugins: dict[str, PluginInfo] = field(default_factory=dict)
    backends: dict[str, Backend] = field(default_factory=dict)
    metrics: dict[str, Metric] = field(default_factory=dict)
    report_sections: list[Any] = field(default_factory=list)
    trackers: dict[str, Any] = field(default_factory=dict)  # name -> harness.types.Tracker
    owner: dict[tuple[str, str], str] = field(default_factory=dict)  # (kind, name) -> plugin name

    def metric(self, name: str) -> Metric:
        if name not in self.metrics:
            raise UserError(f"unknown metric {name!r}{did_you_mean(name, self.metrics)}; 'harness plugins' lists them")
        return self.metrics[name]


def _register_callback(registry: Registry, kind: str, plugin: str):
    def register(item: Any) -> None:
        name = getattr(item, "name", None)
        if not name:
            raise UserError(f"plugin {plugin!r} registered a {kind} without a name")
        key = (kind, name)
        if key in registry.owner:
            raise UserError(
                f"{kind} {name!r} is registered by two plugins: {registry.owner[key]!r} and {plugin!r}; uninstall or rename one"
            )
        registry.owner[key] = plugin
        if kind == "backend":
            registry.backends[name] = item
        elif kind == "metric":
            registry.metrics[name] = item
        elif kind == "tracker":
            registry.trackers[name] = item
        else:
            registry.report_sections.append(item)
        registry.plugins[plugin].registered.append(f"{kind}:{name}")

    return register


def _import_file(path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(f"harness_local_plugin_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def has_external_plugins(plugins_dir: Path | None) -> bool:
    """Whether any plugin besides the built-ins would load (without importing any of them)."""
    return bool(plugins_dir or os.environ.get(PLUGINS_DIR_ENV) or entry_points(group=ENTRY_POINT_GROUP))


def _candidate_plugins(plugins_dir: Path | None) -> list[tuple[str, str, str | None, Any]]:
    """(name, origin, version, loader) for every plugin to try, in registration order."""
    found: list[tuple[str, str, str | None, Any]] = []
    from tinylm_ref import package_version

    builtin_version = package_version()  # built-ins ship with the harness: its version is theirs
    for module in (*BUILTIN_BACKEND_MODULES, *BUILTIN_METRIC_MODULES, *BUILTIN_TRACKER_MODULES):
        found.append((module, "builtin", builtin_version, lambda m=module: importlib.import_module(m)))
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        dist = getattr(ep, "dist", None)
        version = dist.version if dist is not None else None
        origin = f"entry point ({dist.metadata['Name']})" if dist is not None else "entry point"
        found.append((ep.name, origin, version, ep.load))
    directories = [plugins_dir] if plugins_dir else []
    if os.environ.get(PLUGINS_DIR_ENV):
        directories.append(Path(os.environ[PLUGINS_DIR_ENV]))
    for directory in dict.fromkeys(d.resolve() for d in directories):  # the same directory once
        if not directory.is_dir():
            raise UserError(f"plugins directory not found: {directory}; pass an existing directory to --plugins-dir")
        for path in sorted(directory.glob("*.py")):
            found.append((path.stem, str(path), None, lambda p=path: _import_file(p)))
    return found


def _drop_plugin(registry: Registry, plugin: str) -> None:
    """Forget everything ``plugin`` registered, so a half-registered plugin leaves nothing behind."""
    owned = [key for key, owner in registry.owner.items() if owner == plugin]
    tables: dict[str, dict[str, Any]] = {
        "backend": registry.backends,
        "metric": registry.metrics,
        "tracker": registry.trackers,
    }
    for kind, name in owned:
        del registry.owner[(kind, name)]
        if kind in tables:  # report sections live in a list, dropped below by name
            tables[kind].pop(name, None)
    dropped_sections = {name for kind, name in owned if kind == "section"}
    registry.report_sections[:] = [s for s in registry.report_sections if s.name not in dropped_sections]
    registry.plugins.pop(plugin, None)
    if registry.pm.get_plugin(plugin) is not None:
        registry.pm.unregister(name=plugin)


def build_registry(plugins_dir: Path | None = None) -> Registry:
    """Import, register and collect every plugin; hook typos fail loudly via ``check_pending``."""
    pm = pluggy.PluginManager("harness")
    pm.add_hookspecs(hookspecs)
    registry = Registry(pm=pm)
    for name, origin, version, load in _candidate_plugins(plugins_dir):
        try:
            module = load()
            pm.register(module, name=name)
        except Exception as exc:  # a broken third-party plugin must not take the run down
            if origin == "builtin" and not name.endswith(".hf"):
                raise
            warnings.warn(
                f"plugin {name!r} ({origin}) failed to load and is skipped: {exc.__class__.__name__}: {exc}",
                PluginLoadWarning,
                stacklevel=2,
            )
            continue
        registry.plugins[name] = PluginInfo(name=name, origin=origin, version=version)
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise UserError(f"plugin {exc.plugin!r} implements a hook that does not exist: {exc}") from exc
    for hook_name, kind in (
        ("register_backends", "backend"),
        ("register_metrics", "metric"),
        ("register_report_sections", "section"),
        ("register_trackers", "tracker"),
    ):
        for impl in getattr(pm.hook, hook_name).get_hookimpls():  # registration order
            try:
                impl.function(register=_register_callback(registry, kind, impl.plugin_name))
            except UserError:
                raise  # a name collision names both plugins: the user must choose
            except Exception as exc:  # a broken third-party hook must not take every command down
                if registry.plugins.get(impl.plugin_name, PluginInfo("", "")).origin == "builtin":
                    raise
                _drop_plugin(registry, impl.plugin_name)
                warnings.warn(
                    f"plugin {impl.plugin_name!r} failed in {hook_name} and is skipped: {exc.__class__.__name__}: {exc}",
                    PluginLoadWarning,
                    stacklevel=2,
                )
    return registry


_REGISTRY: Registry | None = None
_REGISTRY_DIR: Path | None = None


def get_registry(plugins_dir: Path | None = None) -> Registry:
    """The process-wide registry, built on first use (lazily, once per plugins directory)."""
    global _REGISTRY, _REGISTRY_DIR
    if _REGISTRY is None or plugins_dir != _REGISTRY_DIR:
        _REGISTRY, _REGISTRY_DIR = build_registry(plugins_dir), plugins_dir
    return _REGISTRY
