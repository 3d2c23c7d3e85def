"""Without the [serve] extra, serving commands and openai: specs stop with one line naming the extra.

The extra's modules are made unimportable for real (``sys.modules[name] = None`` makes ``import name`` raise
ImportError), and the commands run through the real entry point in this process.
"""

from __future__ import annotations

import pytest

from tests.harness.cli_result import run_main

SUITE = "suites/smoke.yaml"


@pytest.mark.parametrize("module", ["httpx", "httpx_sse"])
def test_openai_spec_without_the_extra_names_it(tmp_path, monkeypatch, module):
    from pathlib import Path

    monkeypatch.setitem(__import__("sys").modules, module, None)
    suite = Path(__file__).resolve().parents[3] / SUITE
    result = run_main(["run", suite, "--models", "openai:http://127.0.0.1:9/v1#m", "--out", tmp_path / "r"])
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: served models need the [serve] extra: pip install 'tinylm-harness[serve]'"
    ]
    assert not (tmp_path / "r").exists()


def test_serve_without_the_extra_names_it(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "uvicorn", None)
    result = run_main(["serve", "2.5m"])
    assert result.returncode == 2
    assert "[serve] extra" in result.stderr and "Traceback" not in result.stderr
