"""Suite parsing: every bad input is a one-line error naming the file, field (and line) and the fix."""

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.errors import UserError
from harness.suite import load_suite

REPO = Path(__file__).resolve().parents[2]
GOOD = """name: s
sampling: {temperature: 0.8, top_k: 50, max_new_tokens: 16, seed: 1}
prompts:
  - {id: a, category: x, text: "Once upon a time"}
  - {id: b, category: y, text: "Tom said"}
"""


def write(tmp_path, text, name="s.yaml"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def error_of(path):
    with pytest.raises(UserError) as info:
        load_suite(path)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_bundled_suites_are_valid():
    tiny = load_suite(REPO / "suites" / "tinystories.yaml")
    assert len(tiny.prompts) == 100 and tiny.suite.samples_per_prompt == 1
    assert (tiny.suite.sampling.temperature, tiny.suite.sampling.top_k, tiny.suite.sampling.max_new_tokens) == (
        0.8,
        50,
        256,
    )
    categories = [p.category for p in tiny.prompts]
    assert {c: categories.count(c) for c in set(categories)} == {
        "story_opening": 25,
        "character_intro": 25,
        "action": 25,
        "dialogue": 25,
    }
    assert load_suite(REPO / "suites" / "smoke.yaml").prompts


def test_hash_ignores_description_but_not_prompts(tmp_path):
    base = load_suite(write(tmp_path, GOOD)).sha256
    assert load_suite(write(tmp_path, GOOD.replace("name: s", "name: s\ndescription: hi"), "b.yaml")).sha256 == base
    assert load_suite(write(tmp_path, GOOD.replace("Tom said", "Tom says"), "c.yaml")).sha256 != base


def test_prompts_from_file(tmp_path):
    (tmp_path / "p.jsonl").write_text('{"id": "x", "category": "c", "text": "Hello"}\n', encoding="utf-8")
    loaded = load_suite(write(tmp_path, "name: s\nprompts_file: p.jsonl\n"))
    assert [p.id for p in loaded.prompts] == ["x"]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("name: s\nprompts: [\n", "malformed YAML"),
        (GOOD.replace("sampling:", "sampeling:"), "unknown field 'sampeling' (did you mean 'sampling'?)"),
        (GOOD.replace("top_k: 50", "top_kk: 50"), "unknown field 'sampling.top_kk' (did you mean 'top_k'?)"),
        (GOOD.replace("temperature: 0.8", "temperature: hot"), "field 'sampling.temperature'"),
        (GOOD.replace("max_new_tokens: 16", "max_new_tokens: 0"), "field 'sampling.max_new_tokens'"),
        ("name: s\nprompts: []\n", "no prompts"),
        (GOOD.replace("id: b", "id: a"), "duplicate prompt id 'a'"),
        (GOOD.replace('text: "Tom said"', 'text: ""'), "field 'prompts.1.text'"),
        ("- just a list\n", "must be a YAML mapping"),
        ("name: s\n", "exactly one of 'prompts'"),
        (GOOD + "reference: {}\n", "exactly one of 'path' or 'hub_dataset'"),
    ],
)
def test_bad_suites_get_one_line_errors(tmp_path, text, expected):
    assert expected in error_of(write(tmp_path, text))


def test_error_names_the_line(tmp_path):
    message = error_of(write(tmp_path, GOOD.replace("max_new_tokens: 16", "max_new_tokens: -3")))
    assert message.startswith(f"{tmp_path / 's.yaml'}:2:")


def test_non_utf8_and_missing_files(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_bytes(b"name: s\nprompts: [{id: a, text: caf\xe9}]\n")
    assert "not valid UTF-8" in error_of(path)
    assert "file not found" in error_of(tmp_path / "missing.yaml")


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=200))
def test_parser_never_crashes_on_arbitrary_text(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("fuzz") / "s.yaml"
    path.write_text(text, encoding="utf-8")
    try:
        load_suite(path)
    except UserError as exc:
        assert "\n" not in str(exc)


@settings(max_examples=60, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=10),
        lambda children: (
            st.lists(children, max_size=3)
            | st.dictionaries(
                st.sampled_from(["name", "prompts", "sampling", "id", "text", "seed", "top_k", "metrics"]),
                children,
                max_size=4,
            )
        ),
        max_leaves=12,
    )
)
def test_parser_never_crashes_on_arbitrary_structures(tmp_path_factory, data):
    import yaml

    path = tmp_path_factory.mktemp("fuzz") / "s.yaml"
    path.write_text(
        yaml.safe_dump({"name": "s", "prompts": data} if not isinstance(data, dict) else data), encoding="utf-8"
    )
    try:
        load_suite(path)
    except UserError as exc:
        assert "\n" not in str(exc)
