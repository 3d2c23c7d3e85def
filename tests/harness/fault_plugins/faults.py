"""Fault-injection plugins for runner tests (loaded with --plugins-dir; never installed)."""

import os
import time
from pathlib import Path

import torch

from harness import hookimpl
from harness.backends.tinylm import load_random
from harness.devices import resolve_device
from harness.types import Metric


class _CrashAfter:
    """Wraps a model so that generate() raises after N calls: a backend dying mid-run."""

    def __init__(self, model, n):
        self._model, self._left = model, n
        self.info, self.eos_id = model.info, model.eos_id

    def __getattr__(self, name):
        return getattr(self._model, name)

    def generate(self, prompt_ids, sampling, generator):
        if self._left <= 0:
            raise RuntimeError("simulated backend crash")
        self._left -= 1
        return self._model.generate(prompt_ids, sampling, generator)


class _HeldWhile:
    """Wraps a model so that generate() waits while the file ``FAULT_HOLD`` names exists: a server whose one
    worker stays busy for exactly as long as a test needs (bounded, so a broken test cannot hang)."""

    def __init__(self, model, hold):
        self._model, self._hold = model, Path(hold)
        self.info, self.eos_id = model.info, model.eos_id

    def __getattr__(self, name):
        return getattr(self._model, name)

    def generate(self, prompt_ids, sampling, generator, on_token=None):
        deadline = time.monotonic() + 600
        while self._hold.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        return self._model.generate(prompt_ids, sampling, generator, on_token=on_token)


class FaultBackend:
    name = "fault"

    def claims(self, spec):
        return False

    def load(self, spec, options):
        kind = spec.split(":", 1)[1]
        model = load_random("2.5m", spec, resolve_device("cpu"), seed=1)
        if kind.startswith("crash"):
            # warmup calls generate too, so count it in
            return _CrashAfter(model, int(kind[len("crash") :]) + int(os.environ.get("FAULT_WARMUP", "1")))
        if kind == "nan":
            with torch.no_grad():
                model.model.norm.weight.fill_(float("nan"))
            return model
        if kind == "slow":
            return model
        if kind == "held":
            return _HeldWhile(model, os.environ["FAULT_HOLD"])
        raise ValueError(kind)

    def available(self):
        return [("fault:crashN|nan|slow|held", "fault injection for tests")]


def _explode(ctx):
    raise ZeroDivisionError("metric bug")


@hookimpl
def register_backends(register):
    register(FaultBackend())


@hookimpl
def register_metrics(register):
    register(Metric(name="always_fails", unit="", higher_is_better=None, description="raises", compute=_explode))
