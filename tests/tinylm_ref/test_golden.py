"""Golden-output regression: greedy decoding of a fixed prompt on each bundled checkpoint must give
the stored tokens (written by scripts/bundle_checkpoints.py when the checkpoint was made)."""

import json
from pathlib import Path

import pytest
import torch

from harness.backends.tinylm import BUNDLED_DIR, TinyLMBackend
from harness.types import LoadOptions, SamplingParams
from tinylm_ref import PRESETS

GOLDEN = Path(__file__).parent / "golden"


@pytest.mark.parametrize("preset", list(PRESETS))
def test_bundled_checkpoint_reproduces_golden_greedy_tokens(preset):
    assert (BUNDLED_DIR / preset / "model.safetensors").is_file(), f"bundled checkpoint {preset} missing"
    golden = json.loads((GOLDEN / f"{preset}.json").read_text())
    model = TinyLMBackend().load(preset, LoadOptions(device="cpu"))
    assert model.info.source == str((BUNDLED_DIR / preset).resolve())  # the alias resolved offline to the bundle
    out = model.generate(
        model.encode(golden["prompt"]), SamplingParams(0.0, None, golden["max_new_tokens"], 0), torch.Generator()
    )
    assert out.tokens == golden["tokens"]
    assert model.decode(out.tokens) == golden["text"]
