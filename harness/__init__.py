"""tinylm-harness: benchmark and evaluate tiny language models.

Plugin authors need only ``hookimpl`` and the types in ``harness.types``.
"""

from harness.hookspecs import hookimpl, hookspec

__version__ = "0.1.0"
__all__ = ["__version__", "hookimpl", "hookspec"]
