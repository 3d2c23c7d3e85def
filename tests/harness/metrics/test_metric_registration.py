"""Every built-in metric registers through the pluggy hook with the fields the contract requires."""

from __future__ import annotations

import importlib

import pluggy
import pytest

from harness import hookspecs
from harness.metrics import BUILTIN_METRIC_MODULES
from harness.types import Metric

# name: (unit, higher_is_better, kind, level, default)
EXPECTED = {
    "ttft_ms": ("ms", False, "timing", "sample", True),
    "tps": ("tokens/s", True, "timing", "sample", True),
    "latency_ms": ("ms", False, "timing", "sample", True),
    "decode_tps": ("tokens/s", True, "timing", "sample", True),
    "itl_ms_p50": ("ms", False, "timing", "sample", True),
    "itl_ms_p95": ("ms", False, "timing", "sample", True),
    "tokens_generated": ("tokens", None, "count", "sample", True),
    "perplexity": ("", False, "quality", "sample", True),
    "avg_token_prob": ("", True, "quality", "sample", True),
    "repetition_rate": ("%", False, "quality", "sample", True),
    "coherence_length": ("tokens", True, "quality", "sample", True),
    "distinct_2": ("%", True, "quality", "sample", True),
    "vocab_diversity": ("%", True, "quality", "sample", True),
    "eos_rate": ("%", True, "quality", "sample", True),
    "heldout_bpb": ("bits/byte", False, "quality", "model", True),
    "judge_bpb": ("bits/byte", False, "quality", "sample", False),
    "peak_mem_mb": ("MB", False, "timing", "model", True),
    # load levels (harness run --concurrency): off by default, the runner adds them to load runs
    **{f"load_{w}_p{q}_ms": ("ms", False, "timing", "model", False) for w in ("ttft", "itl") for q in (50, 95, 99)},
    "load_requests_per_s": ("req/s", True, "timing", "model", False),
    "load_output_tokens_per_s": ("tok/s", True, "timing", "model", False),
    "load_errors": ("requests", False, "count", "model", False),
    "load_concurrency": ("streams", None, "count", "model", False),
}


def registered(modules=BUILTIN_METRIC_MODULES) -> dict[str, tuple[str, Metric]]:
    """Register the modules on a fresh PluginManager, as harness.plugins does, and call the hook."""
    pm = pluggy.PluginManager("harness")
    pm.add_hookspecs(hookspecs)
    for name in modules:
        pm.register(importlib.import_module(name), name=name)
    pm.check_pending()
    found: dict[str, tuple[str, Metric]] = {}
    for impl in pm.hook.register_metrics.get_hookimpls():
        collected: list[Metric] = []
        impl.function(register=collected.append)
        for metric in collected:
            assert metric.name not in found, f"{metric.name} registered twice"
            found[metric.name] = (impl.plugin_name, metric)
    return found


def test_modules_are_import_paths():
    assert isinstance(BUILTIN_METRIC_MODULES, tuple)
    assert all(isinstance(m, str) and m.startswith("harness.metrics.") for m in BUILTIN_METRIC_MODULES)
    assert len(set(BUILTIN_METRIC_MODULES)) == len(BUILTIN_METRIC_MODULES)


def test_every_builtin_metric_registers_with_the_contract_fields():
    found = registered()
    assert set(found) == set(EXPECTED)
    for name, (_, metric) in found.items():
        assert isinstance(metric, Metric)
        assert (metric.unit, metric.higher_is_better, metric.kind, metric.level, metric.default) == EXPECTED[name], name
        assert metric.description
    assert found["heldout_bpb"][1].requires == ("reference_texts",)
    assert found["judge_bpb"][1].requires == ("judge",)
    assert all(not m.requires for name, (_, m) in found.items() if name not in ("heldout_bpb", "judge_bpb"))


def test_hook_call_collects_them_all():
    pm = pluggy.PluginManager("harness")
    pm.add_hookspecs(hookspecs)
    for name in BUILTIN_METRIC_MODULES:
        pm.register(importlib.import_module(name))
    collected: list[Metric] = []
    pm.hook.register_metrics(register=collected.append)
    assert sorted(m.name for m in collected) == sorted(EXPECTED)


@pytest.mark.parametrize("module", BUILTIN_METRIC_MODULES)
def test_each_module_registers_exactly_its_metrics(module):
    found = registered((module,))
    assert sorted(found) == sorted(m.name for m in importlib.import_module(module).METRICS)
    assert {plugin for plugin, _ in found.values()} == {module}
