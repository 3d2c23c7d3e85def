"""The benchmark scripts the docs quote still run and report every path (tiny settings, no timing asserts)."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

from tests.ceilings import HANG_S
from tinylm_ref import native as native_kernel

ROOT = Path(__file__).resolve().parents[2]


def test_decode_speed_reports_every_path_and_ratio(tmp_path):
    out = tmp_path / "speed.json"
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "decode_speed.py"),
            *("--presets", "2.5m", "--tokens", "6", "--reps", "2", "--warmup", "0"),
            *("--overhead-prompts", "2", "--overhead-tokens", "4", "--overhead-models", "tinylm:random/2.5m"),
            *("--json", str(out)),
        ],
        capture_output=True,
        text=True,
        timeout=HANG_S,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    data = json.loads(out.read_text())
    (preset,) = data["presets"]
    for method in ("reference", "reference_eager", "reference_bf16", "naive", "hf", "hf_bf16", "floor", "floor_bf16"):
        entry = preset["results"][method]
        assert entry["decode_tps"] > 0 and entry["tokens"] == [6, 6], method
    native = {"onnx": "onnxruntime", "llamacpp_f32": "llama_cpp", "llamacpp_q8_0": "llama_cpp"}
    for method, module in native.items():  # the runtime rows, wherever their extra is installed
        if importlib.util.find_spec(module) is not None:
            assert preset["results"][method]["tokens"] == [6, 6] and preset["ratios"][f"{method}_over_hf"] > 0
            assert preset["native_files"][method]
    assert preset["results"]["floor"]["variant"] in ("linear", "mv", "mmT", "onednn", "sized", "panels")
    if native_kernel.load_kernel() is not None:  # the fused step's own products are among the floors
        assert preset["results"]["floor_panels"]["tokens"] == [6, 6]
    ratios = {"ref_over_hf", "ref_bf16_over_hf", "ref_bf16_over_hf_bf16", "ref_over_floor", "ref_over_eager"}
    assert set(preset["ratios"]) >= ratios
    (overhead,) = data["overhead"]
    assert overhead["samples"] == 2 and 0 <= overhead["overhead_share"] < 1
    assert "(1)/(3) decode" in result.stdout and "targets (default float32 path)" in result.stdout
