"""The ``onnx`` and ``gguf`` backends without their runtimes: cheap registration, spec checks, the extra named.

These run whether or not the ``[onnx]`` / ``[gguf]`` extras are installed: a user without them must get the
other backends unharmed and one line naming the extra when they ask for a native model.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from harness.errors import UserError
from harness.types import LoadOptions
from tests.ceilings import HANG_S


def test_registering_the_backends_imports_no_runtime():
    code = (
        "import sys\nfrom harness.plugins import get_registry\nr = get_registry()\n"
        "assert {'onnx', 'gguf'} <= set(r.backends), r.backends\n"
        "print(sorted(m for m in ('onnxruntime', 'onnx', 'llama_cpp', 'gguf') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=HANG_S)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def load(spec, **options):
    from harness.models import load_model
    from harness.plugins import get_registry

    return load_model(spec, get_registry(), LoadOptions(device="cpu", **options))


def test_without_onnxruntime_one_line_names_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # exactly what a missing package looks like to import
    with pytest.raises(UserError, match=r"needs onnxruntime .*pip install 'tinylm-harness\[onnx\]'") as info:
        load(f"onnx:{tmp_path}")
    assert "\n" not in str(info.value)


def test_without_llama_cpp_one_line_names_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "llama_cpp", None)
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF")
    with pytest.raises(UserError, match=r"needs llama-cpp-python .*pip install 'tinylm-harness\[gguf\]'"):
        load(f"gguf:{model}")


@pytest.mark.parametrize(
    ("spec", "options", "message"),
    [
        ("onnx:", {}, "empty spec"),
        ("onnx:./no/such/dir", {}, "does not exist"),
        ("onnx:org/name/extra@main", {}, r"onnx:ORG/NAME\[@REVISION\]"),
        ("onnx:{tmp}", {"dtype": "bfloat16"}, "runs in the dtype it was exported in"),
        ("onnx:{tmp}", {"batch_size": 4}, "batch size 1"),
        ("gguf:", {}, "empty spec"),
        ("gguf:org/name", {}, "ORG/NAME/FILE.gguf"),
        ("gguf:org/name/weights.bin", {}, "ORG/NAME/FILE.gguf"),
        ("gguf:./missing.gguf", {}, "does not exist"),
        ("gguf:org/name/m.gguf", {"device": "cuda"}, "runs llama.cpp on the CPU"),
        ("gguf:org/name/m.gguf", {"extra": {"kv_cache": "q4_0"}}, "kv_cache='q4_0'"),
        ("gguf:org/name/m.gguf", {"extra": {"probe": "maybe"}}, "must be true or false"),
    ],
)
def test_spec_and_option_mistakes_are_caught_before_a_run_starts(tmp_path, spec, options, message):
    from harness.models import check_spec
    from harness.plugins import get_registry

    with pytest.raises(UserError, match=message):
        check_spec(spec.format(tmp=tmp_path), get_registry(), LoadOptions(**options))


def test_un_prefixed_gguf_files_and_onnx_directories_are_claimed(tmp_path):
    from harness.models import resolve_backend
    from harness.plugins import get_registry

    (tmp_path / "m.gguf").write_bytes(b"GGUF")
    export = tmp_path / "export"
    export.mkdir()
    (export / "model.onnx").write_bytes(b"")
    registry = get_registry()
    assert resolve_backend(str(tmp_path / "m.gguf"), registry).name == "gguf"
    assert resolve_backend(str(export), registry).name == "onnx"
