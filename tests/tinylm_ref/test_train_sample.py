import csv

import torch

from tests.conftest import TINY_CONFIG
from tinylm_ref import LLM, ModelConfig, generate, load_checkpoint
from tinylm_ref.checkpoint import save_weights
from tinylm_ref.config import ModelConfig as Cfg
from tinylm_ref.data import tokenize_to_file
from tinylm_ref.tokenizer import EOS, special_id
from tinylm_ref.train import TrainConfig, lr_at, train


def _log(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_training_lowers_loss_and_writes_checkpoints(tiny_checkpoint):
    run = tiny_checkpoint.parent
    rows = _log(run / "loss_log.csv")
    assert float(rows[-1]["train_loss"]) < 5.0  # ln(320) = 5.77 at initialisation
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        assert (tiny_checkpoint / name).is_file()
    assert (run / "best" / "model.safetensors").is_file()


def test_loss_falls_over_training(tmp_path, stories, tiny_tokenizer):
    text = tmp_path / "t.txt"
    text.write_text("".join(f"{s}\n<|endoftext|>\n" for s in stories), encoding="utf-8")
    tokens = tokenize_to_file(text, tiny_tokenizer, tmp_path / "c")
    cfg = TrainConfig(
        steps=40, batch_size=8, lr=3e-3, warmup_steps=5, eval_every=10, save_every=40, seed=3, device="cpu"
    )
    train(Cfg(**TINY_CONFIG), tiny_tokenizer, tokens, tokens, tmp_path / "run", cfg, progress=False)
    rows = _log(tmp_path / "run" / "loss_log.csv")
    assert float(rows[-1]["val_loss"]) < float(rows[0]["val_loss"]) - 0.3


def test_resume_reproduces_uninterrupted_loss_curve(tmp_path, stories, tiny_tokenizer):
    text = tmp_path / "t.txt"
    text.write_text("".join(f"{s}\n<|endoftext|>\n" for s in stories[:100]), encoding="utf-8")
    tokens = tokenize_to_file(text, tiny_tokenizer, tmp_path / "c")
    model_cfg = Cfg(**{**TINY_CONFIG, "dropout": 0.1})  # dropout makes RNG restoration matter
    full = TrainConfig(
        steps=20, batch_size=4, lr=3e-3, warmup_steps=3, eval_every=5, save_every=5, seed=5, device="cpu"
    )
    train(model_cfg, tiny_tokenizer, tokens, tokens, tmp_path / "a", full, progress=False)
    train(model_cfg, tiny_tokenizer, tokens, tokens, tmp_path / "b", full, progress=False, session_steps=10)
    assert len(_log(tmp_path / "b" / "loss_log.csv")) == 2  # interrupted after step 10
    train(model_cfg, tiny_tokenizer, tokens, tokens, tmp_path / "b", full, resume=True, progress=False)
    a, b = _log(tmp_path / "a" / "loss_log.csv"), _log(tmp_path / "b" / "loss_log.csv")
    assert [r["step"] for r in a] == [r["step"] for r in b]
    assert [r["train_loss"] for r in a] == [r["train_loss"] for r in b]
    assert [r["val_loss"] for r in a] == [r["val_loss"] for r in b]


def test_lr_schedule_warmup_then_cosine_to_zero():
    cfg = TrainConfig(steps=1000, warmup_steps=100, lr=1e-3)
    assert lr_at(0, cfg) == 1e-5 and abs(lr_at(99, cfg) - 1e-3) < 1e-12
    assert lr_at(550, cfg) < lr_at(200, cfg) and abs(lr_at(1000, cfg)) < 1e-12


def test_seeded_sampling_is_identical_twice_and_stops_at_eos(tiny_checkpoint):
    ckpt = load_checkpoint(tiny_checkpoint)
    ids = ckpt.tokenizer.encode("Once upon a time").ids
    eos = special_id(ckpt.tokenizer, EOS)
    runs = [generate(ckpt.model, ids, 40, 0.8, 50, torch.Generator().manual_seed(11), eos) for _ in range(2)]
    assert runs[0].tokens == runs[1].tokens and runs[0].tokens
    assert eos not in runs[0].tokens
    assert len(runs[0].logprobs) == len(runs[0].tokens) == len(runs[0].token_times_ns)
    assert all(lp <= 0 for lp in runs[0].logprobs)
    other = generate(ckpt.model, ids, 40, 0.8, 50, torch.Generator().manual_seed(12), eos)
    assert other.tokens != runs[0].tokens


def test_generation_stops_when_context_is_full(tiny_checkpoint):
    ckpt = load_checkpoint(tiny_checkpoint)
    ids = ckpt.tokenizer.encode("Once upon a time").ids
    out = generate(ckpt.model, ids, 500, 1.0, None, torch.Generator().manual_seed(0), eos_id=None)
    assert out.stop_reason == "context" and len(ids) + len(out.tokens) == ckpt.model.config.max_seq_len


def test_seed_loading_api_with_torch_load(tmp_path):
    cfg = ModelConfig(vocab_size=50, dim=16, n_layers=1, n_heads=2, ffn_dim=32, max_seq_len=16)
    model = LLM(cfg)
    torch.save(model.state_dict(), tmp_path / "m.pt")
    again = LLM(cfg)
    again.load_state_dict(torch.load(tmp_path / "m.pt", weights_only=True))
    x = torch.randint(0, 50, (1, 8))
    assert torch.equal(model(x), again(x))


def test_safetensors_round_trip_in_half_precision(tmp_path, tiny_checkpoint):
    ckpt = load_checkpoint(tiny_checkpoint)
    save_weights(ckpt.model, tmp_path / "model.safetensors", dtype="bfloat16")
    for name in ("config.json", "tokenizer.json"):
        (tmp_path / name).write_bytes((tiny_checkpoint / name).read_bytes())
    half = load_checkpoint(tmp_path)
    x = torch.tensor([ckpt.tokenizer.encode("The dog ran").ids])
    assert torch.allclose(half.model(x), ckpt.model(x), atol=0.15)
    assert half.model.head.weight is half.model.tok_emb.weight
