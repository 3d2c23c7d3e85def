"""The study's Hub layout (``.pt`` state dicts + tokenizer JSON + a config file) loaded offline into tinylm_ref.

A fake ``deycoding/deycoding-tiny-language-model`` is written into a temporary Hub cache: the 10m size
as a training checkpoint saved from a ``torch.compile``'d model with different parameter names, the
5m size as a plain ``torch.save(model.state_dict())``, and one blog-style ``config.py`` with a
``# 10M Model Config`` section per size. Nothing touches the network.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import socket
from pathlib import Path

import pytest
import torch

from harness.backends.study_layout import STUDY_REPO, StudyLayout, load_study_layout, size_spellings, suggest_key_map
from harness.errors import UserError
from harness.types import LoadOptions
from tests.harness.backends.hub_cache import put_in_hub_cache
from tinylm_ref.config import ModelConfig
from tinylm_ref.model import LLM

COMMIT = "d" * 40
CFG_10M = ModelConfig(vocab_size=320, dim=32, n_layers=2, n_heads=2, ffn_dim=64, max_seq_len=64)
CFG_5M = ModelConfig(vocab_size=320, dim=24, n_layers=1, n_heads=3, ffn_dim=48, max_seq_len=48)
CONFIG_PY = """# Study-style architecture file: one section per size
# 10M Model Config
vocab_size = 320
dim = 32
n_layers = 2
n_heads = 2
ffn_dim = 64
max_seq_len = 64
tie_weights = True
total_params = 10_700_000

# 5M Model Config
vocab_size = 320
d_model = 24
n_layer = 1
n_head = 3
ffn_dim = 48
block_size = 48
"""
KEY_MAP = {"layers.": "blocks."}


def renamed_checkpoint(model: LLM) -> dict:
    """What a training script saving a compiled model with its own names would write."""
    state = {
        f"_orig_mod.{k.replace('blocks.', 'layers.')}": v for k, v in model.state_dict().items() if k != "head.weight"
    }
    return {"model_state_dict": state, "step": 50_000, "config": {"n_heads": model.config.n_heads}}


@pytest.fixture(scope="session")
def seed_repo(tmp_path_factory, tiny_tokenizer) -> dict:
    root = tmp_path_factory.mktemp("seed_repo")
    torch.manual_seed(0)
    m10, m5 = LLM(CFG_10M).eval(), LLM(CFG_5M).eval()
    torch.save(renamed_checkpoint(m10), root / "tinystories_10m_final_model.pt")
    torch.save(m5.state_dict(), root / "tinystories_5m_final_model.pt")
    for size in ("10m", "5m"):
        tiny_tokenizer.save(str(root / f"tinystories_{size}_tokenizer.json"))
    (root / "config.py").write_text(CONFIG_PY)
    (root / "README.md").write_text("study layout test repository\n")
    home = tmp_path_factory.mktemp("hf_home_seed")
    snapshot = put_in_hub_cache(home / "hub", STUDY_REPO, root, COMMIT)
    return {"home": home, "root": root, "snapshot": snapshot, "10m": m10, "5m": m5}


@pytest.fixture(autouse=True)
def offline(monkeypatch, seed_repo):
    monkeypatch.setenv("HF_HOME", str(seed_repo["home"]))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def no_network(*args, **kwargs):
        raise AssertionError(f"a test tried to open a network connection: {args}")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)


def same_function(a: LLM, b: LLM) -> bool:
    ids = torch.randint(0, a.config.vocab_size, (1, 20), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return torch.allclose(a(ids), b(ids), atol=1e-6)


def options(**layout) -> LoadOptions:
    return LoadOptions(device="cpu", extra={"study_layout": layout})


def error(*args, **kwargs) -> str:
    with pytest.raises(UserError) as info:
        load_study_layout(*args, **kwargs)
    assert "\n" not in str(info.value)
    return str(info.value)


def test_hub_repo_loads_offline_with_key_map(seed_repo):
    ckpt = load_study_layout(STUDY_REPO, "10m", options(key_map=KEY_MAP))
    assert ckpt.config == CFG_10M and same_function(ckpt.model, seed_repo["10m"])
    assert ckpt.revision == COMMIT and ckpt.source == f"{STUDY_REPO}@{COMMIT}/tinystories_10m_final_model.pt"
    assert ckpt.files == {
        "weights": "tinystories_10m_final_model.pt",
        "tokenizer": "tinystories_10m_tokenizer.json",
        "config": "config.py",
    }
    weights = seed_repo["root"] / "tinystories_10m_final_model.pt"
    assert ckpt.weights_sha256 == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert any("_orig_mod." in n for n in ckpt.notes) and any("total_params" in n for n in ckpt.notes)
    model, tokenizer, source, sha = ckpt  # the tinylm backend unpacks it like this
    assert (
        model is ckpt.model
        and tokenizer.get_vocab_size() == 320
        and source == ckpt.source
        and sha == ckpt.weights_sha256
    )


def test_plain_state_dict_needs_no_options_and_config_aliases_apply(seed_repo):
    ckpt = load_study_layout(STUDY_REPO, "5m")
    assert ckpt.config == CFG_5M and same_function(ckpt.model, seed_repo["5m"])  # d_model, n_layer, block_size...


def test_through_the_tinylm_backend_when_nothing_is_bundled(seed_repo, tmp_path, monkeypatch):
    """The lead's fallback: the preset alias with no bundled checkpoint goes to the study's Hub repo."""
    import harness.backends.tinylm as tinylm
    from harness.models import load_model
    from harness.plugins import get_registry

    monkeypatch.setattr(tinylm, "BUNDLED_DIR", tmp_path / "none")
    model = load_model("5m", get_registry(), LoadOptions(device="cpu"))
    assert model.info.backend == "tinylm" and STUDY_REPO in model.info.source and COMMIT in model.info.source
    assert same_function(model.model, seed_repo["5m"])


def test_unmatched_keys_are_named_with_a_suggested_key_map():
    message = error(STUDY_REPO, "10m", options())
    assert "tinystories_10m_final_model.pt" in message and "missing" in message and "unexpected" in message
    assert "blocks.0.attn.qkv.weight" in message and "layers.0.attn.qkv.weight" in message
    assert json.dumps(KEY_MAP) in message


def test_missing_size_names_the_file_and_the_option():
    message = error(STUDY_REPO, "7m")
    assert "tinystories_7m_final_model.pt" in message and "study_layout 'weights' pattern" in message


def test_repository_not_in_the_offline_cache():
    message = error("someone/other-study-repo", "10m")
    assert "someone/other-study-repo@main is not in the Hugging Face cache" in message and "HF_HUB_OFFLINE" in message


def copy_repo(seed_repo, tmp_path: Path, drop: tuple[str, ...] = ()) -> Path:
    local = tmp_path / "repo"
    shutil.copytree(seed_repo["root"], local, ignore=shutil.ignore_patterns(*drop))
    return local


def test_local_directory_json_config_keyed_by_size_and_renamed_files(seed_repo, tmp_path):
    local = copy_repo(seed_repo, tmp_path, drop=("config.py",))
    (local / "configs.json").write_text(json.dumps({"10M": CFG_10M.to_dict(), "5M": CFG_5M.to_dict()}))
    shutil.move(local / "tinystories_10m_final_model.pt", local / "weights-10M.pt")
    ckpt = load_study_layout(str(local), "10m", options(key_map=KEY_MAP, weights="weights-{size}.pt"))
    assert (
        ckpt.revision is None and ckpt.files["config"] == "configs.json" and ckpt.files["weights"] == "weights-10M.pt"
    )
    assert same_function(ckpt.model, seed_repo["10m"])


def test_no_config_file_takes_shapes_then_the_preset(seed_repo, tmp_path):
    local = copy_repo(seed_repo, tmp_path, drop=("config.py",))
    ckpt = load_study_layout(str(local), "10m", options(key_map=KEY_MAP))  # n_heads comes from the embedded config
    assert ckpt.config == CFG_10M and any("no config file" in n for n in ckpt.notes)
    torch.manual_seed(1)
    four_heads = LLM(ModelConfig(vocab_size=320, dim=32, n_layers=1, n_heads=4, ffn_dim=64, max_seq_len=40))
    torch.save(four_heads.state_dict(), local / "tinystories_2_5m_final_model.pt")  # another spelling of 2.5m
    shutil.copy(local / "tinystories_10m_tokenizer.json", local / "tinystories_2.5m_tokenizer.json")
    small = load_study_layout(str(local), "2.5m", options())
    assert small.config.n_heads == 4 and small.config.max_seq_len == 40 and same_function(small.model, four_heads)
    assert any("n_heads=4 from the 2.5m preset" in n for n in small.notes)
    assert "2_5m" in size_spellings("2.5m")
    with pytest.raises(UserError, match="no config file"):
        load_study_layout(str(local), "10m", options(key_map=KEY_MAP, config_required=True))


def test_config_that_contradicts_the_weights_names_the_field(seed_repo, tmp_path):
    local = copy_repo(seed_repo, tmp_path)
    (local / "config.py").write_text(CONFIG_PY.replace("dim = 32", "dim = 64"))
    message = error(str(local), "10m", options(key_map=KEY_MAP))
    assert "dim = 64" in message and "weights have dim = 32" in message and "config.py" in message


def test_separate_projections_and_regex_key_map(seed_repo, tmp_path):
    """llama2.c-style names (wq/wk/wv, w1/w3) become tinylm_ref's fused qkv and gate_up."""
    local = copy_repo(seed_repo, tmp_path)
    model, state = seed_repo["10m"], {}
    for key, value in model.state_dict().items():
        if key.endswith("attn.qkv.weight"):
            for name, part in zip(("wq", "wk", "wv"), value.split(CFG_10M.dim), strict=True):
                state[key.replace("attn.qkv", f"attention.{name}").replace("blocks.", "layers.")] = part.clone()
        elif key.endswith("ffn.gate_up.weight"):
            for name, part in zip(("w1", "w3"), value.split(CFG_10M.ffn_dim), strict=True):
                state[key.replace("ffn.gate_up", f"feed_forward.{name}").replace("blocks.", "layers.")] = part.clone()
        else:
            state[key.replace("blocks.", "layers.")] = value.clone()
    torch.save(state, local / "tinystories_10m_final_model.pt")
    key_map = {
        r"re:^layers\.(\d+)\.attention\.w([qkv])\.": r"blocks.\1.attn.\2.",
        r"re:^layers\.(\d+)\.feed_forward\.w1\.": r"blocks.\1.ffn.gate.",
        r"re:^layers\.(\d+)\.feed_forward\.w3\.": r"blocks.\1.ffn.up.",
        "layers.": "blocks.",
    }
    key_map_file = tmp_path / "key_map.json"
    key_map_file.write_text(json.dumps(key_map))
    ckpt = load_study_layout(str(local), "10m", options(key_map=str(key_map_file)))
    assert same_function(ckpt.model, model)


def test_pickled_objects_are_refused(seed_repo, tmp_path):
    local = copy_repo(seed_repo, tmp_path)
    torch.save({"model": StudyLayout(), "weights": torch.zeros(1)}, local / "tinystories_10m_final_model.pt")
    message = error(str(local), "10m", options())
    assert "weights-only" in message and "tinystories_10m_final_model.pt" in message


def test_bad_options_are_named():
    with pytest.raises(UserError, match="unknown key"):
        StudyLayout.from_options({"study_layout": {"weight": "x.pt"}})
    assert suggest_key_map(["blocks.0.a.weight", "blocks.1.a.weight"], ["h.0.a.weight", "h.1.a.weight"]) == {
        "h.": "blocks."
    }
