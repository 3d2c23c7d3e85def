"""Built-in metric plugins, one module per family.

Each module listed here carries a ``@hookimpl register_metrics(register)`` and is registered with
the plugin manager exactly like a third-party plugin, so the plugin API is exercised by the
product itself. Modules are listed by import path (not imported here) so that loading the
package costs nothing until the plugin manager asks for them. ``_scoring`` is a shared helper,
not a plugin, and is deliberately absent.
"""

from __future__ import annotations

BUILTIN_METRIC_MODULES: tuple[str, ...] = (
    "harness.metrics.latency",
    "harness.metrics.length",
    "harness.metrics.likelihood",
    "harness.metrics.repetition",
    "harness.metrics.diversity",
    "harness.metrics.eos",
    "harness.metrics.heldout",
    "harness.metrics.judge",
    "harness.metrics.memory",
    "harness.metrics.load",
)

__all__ = ["BUILTIN_METRIC_MODULES"]
