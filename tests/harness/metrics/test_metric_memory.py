"""peak_mem_mb: the runner's measurement passes through; the fallback reads and resets the counters."""

from __future__ import annotations

import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness.metrics import memory
from harness.metrics.memory import (
    PEAK_MEM_MB,
    device_kind,
    parse_vm_hwm_kib,
    peak_memory_mb,
    reset_peak_memory,
    ru_maxrss_mb,
)
from harness.types import ModelContext, ModelInfo

STATUS = "Name:\tpython\nVmPeak:\t 900000 kB\nVmHWM:\t  318228 kB\nVmRSS:\t  11024 kB\n"


class _Model:
    """Just enough of a Model for a model-level context: the metric only reads ``info.device``."""

    def __init__(self, device: str) -> None:
        self.info = ModelInfo(
            name="m",
            spec="m",
            backend="test",
            parameters=1,
            vocab_size=2,
            context_length=2,
            device=device,
            dtype="float32",
            source="test",
        )


def ctx(device: str = "cpu", resources: dict | None = None) -> ModelContext:
    return ModelContext(model=_Model(device), records=[], resources=resources or {})


def test_parse_vm_hwm():
    assert parse_vm_hwm_kib(STATUS) == 318228
    assert parse_vm_hwm_kib("VmRSS:\t 5 kB\n") is None


def test_ru_maxrss_units_per_platform():
    assert ru_maxrss_mb(2048, "linux") == 2.0  # KiB
    assert ru_maxrss_mb(2 * 2**20, "darwin") == 2.0  # bytes


def test_device_kind():
    assert device_kind("cpu") == "cpu"
    assert device_kind("cuda") == device_kind("cuda:1") == "cuda"
    assert device_kind("mps") == "other"


def test_runner_measurement_passes_through():
    assert PEAK_MEM_MB.compute_model(ctx(resources={"peak_mem_mb": 123.5})) == 123.5
    assert PEAK_MEM_MB.compute_model(ctx(resources={"peak_mem_mb": None})) is None


def test_fallback_reads_the_host_peak_on_cpu():
    value = PEAK_MEM_MB.compute_model(ctx("cpu"))
    assert value is not None and value > 1.0  # a Python process with torch is far above 1 MiB


def test_unknown_device_is_missing():
    assert PEAK_MEM_MB.compute_model(ctx("mps")) is None
    assert peak_memory_mb("mps") is None
    assert reset_peak_memory("mps") is False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="peak RSS reset needs /proc (Linux)")
def test_reset_starts_a_new_window_and_an_allocation_raises_the_peak():
    if not reset_peak_memory("cpu"):
        pytest.skip("/proc/self/clear_refs is not writable here")
    before = peak_memory_mb("cpu")
    block = bytearray(64 * 2**20)
    block[::4096] = b"x" * len(block[::4096])  # touch every page so it is resident
    after = peak_memory_mb("cpu")
    del block
    assert after - before >= 48  # allow for pages the kernel had already counted


def test_fallback_resets_so_the_next_model_starts_afresh(monkeypatch):
    calls: list[str] = []
    monkeypatch.setattr(memory, "reset_peak_memory", lambda device: calls.append(device) or True)
    PEAK_MEM_MB.compute_model(ctx("cpu"))
    assert calls == ["cpu"]
    PEAK_MEM_MB.compute_model(ctx("cpu", {"peak_mem_mb": 5.0}))  # runner measured: no reset
    assert calls == ["cpu"]


@given(st.text(max_size=200), st.integers(0, 10**9))
def test_parse_never_crashes(noise, kib):
    assert parse_vm_hwm_kib(noise + f"\nVmHWM:\t{kib} kB\n") == kib
