import numpy as np
import pytest

from tinylm_ref.data import TokenStream, iter_stories, tokenize_to_file
from tinylm_ref.tokenizer import BOS, EOS, SPECIAL_TOKENS, decode, encode_story, load_tokenizer

ROUND_TRIP = [
    "Once upon a time, there was a little dog.",
    "She said, \"Hello!\" and he replied: 'Hi...' — then (quietly) left; end?",
    "Line one\nLine two\n\n  indented\ttab",
    "Café naïve résumé, 東京, emoji 🐶, Ω≈ç√",
]


def test_special_tokens_have_fixed_ids(tiny_tokenizer):
    assert [tiny_tokenizer.token_to_id(t) for t in SPECIAL_TOKENS] == [0, 1, 2, 3]
    assert tiny_tokenizer.get_vocab_size() == 320


@pytest.mark.parametrize("text", ROUND_TRIP)
def test_round_trip_including_unseen_characters(tiny_tokenizer, text):
    ids = tiny_tokenizer.encode(text).ids
    assert ids[0] == tiny_tokenizer.token_to_id(BOS)
    assert decode(tiny_tokenizer, ids) == text


def test_saved_tokenizer_is_one_json_file_and_reloads(tiny_tokenizer, tmp_path):
    path = tmp_path / "tok.json"
    tiny_tokenizer.save(str(path))
    again = load_tokenizer(path)
    assert again.encode(ROUND_TRIP[1]).ids == tiny_tokenizer.encode(ROUND_TRIP[1]).ids


def test_encode_story_ends_with_eos(tiny_tokenizer):
    ids = encode_story(tiny_tokenizer, "The end.")
    assert ids[-1] == tiny_tokenizer.token_to_id(EOS) and ids[0] == tiny_tokenizer.token_to_id(BOS)


def test_iter_stories_splits_on_separator_and_skips_empty(tmp_path):
    path = tmp_path / "s.txt"
    path.write_text(
        "First story.\nStill first.\n<|endoftext|>\n\n<|endoftext|>\nSecond.\n<|endoftext|>\nTrailing", encoding="utf-8"
    )
    assert list(iter_stories(path)) == ["First story.\nStill first.", "Second.", "Trailing"]


def test_iter_stories_reads_real_sample(data_dir):
    first = next(iter_stories(data_dir / "train.txt"))
    assert len(first) > 50 and "<|endoftext|>" not in first


def test_token_cache_and_deterministic_batches(tmp_path, stories, tiny_tokenizer):
    text = tmp_path / "d.txt"
    text.write_text("".join(f"{s}\n<|endoftext|>\n" for s in stories[:50]), encoding="utf-8")
    path = tokenize_to_file(text, tiny_tokenizer, tmp_path / "cache")
    assert tokenize_to_file(text, tiny_tokenizer, tmp_path / "cache") == path  # cached
    tokens = np.memmap(path, dtype=np.uint16, mode="r")
    expected = sum(len(encode_story(tiny_tokenizer, s)) for s in stories[:50])
    assert len(tokens) == expected
    stream = TokenStream(path, 16)
    x1, y1 = stream.batch(4, seed=1, step=7)
    x2, _ = stream.batch(4, seed=1, step=7)
    x3, _ = stream.batch(4, seed=1, step=8)
    assert (x1 == x2).all() and not (x1 == x3).all()
    assert (x1[:, 1:] == y1[:, :-1]).all()
