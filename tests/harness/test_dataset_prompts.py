"""Suites whose prompts come from a dataset (local parquet / JSONL through the real ``datasets`` library)."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("datasets")
pd = pytest.importorskip("pandas")

from harness.records import load_run  # noqa: E402
from harness.suite import load_suite  # noqa: E402
from tests.harness.test_runner import harness  # noqa: E402

ROWS = [
    {"uid": f"q{i}", "genre": ["fable", "dialogue", "action"][i % 3], "prompt": f"Once upon a time number {i},"}
    for i in range(9)
]


def _suite(tmp_path, prompts: str, name: str = "ds") -> object:
    path = tmp_path / f"{name}.yaml"
    path.write_text(
        f"name: {name}\nsamples_per_prompt: 1\nsampling: {{max_new_tokens: 6}}\nwarmup: 0\ndevice: cpu\nprompts: {prompts}\n"
    )
    return path


def test_parquet_rows_become_prompts_with_ids_categories_and_a_limit(tmp_path):
    pd.DataFrame(ROWS).to_parquet(tmp_path / "prompts.parquet")
    spec = "{dataset: ./prompts.parquet, column: prompt, id_column: uid, category_column: genre, limit: 5}"
    loaded = load_suite(_suite(tmp_path, spec))
    assert [(p.id, p.category, p.text) for p in loaded.prompts] == [
        (r["uid"], r["genre"], r["prompt"]) for r in ROWS[:5]
    ]
    assert loaded.prompt_source["rows"] == 9 and loaded.prompt_source["limit"] == 5
    assert loaded.prompt_source["fingerprint"]


def test_a_jsonl_directory_without_id_column_numbers_its_rows(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "train.jsonl").write_text("\n".join(json.dumps(r) for r in ROWS[:4]) + "\n")
    loaded = load_suite(_suite(tmp_path, "{dataset: ./data, column: prompt, category: stories}"))
    assert [p.id for p in loaded.prompts] == ["row-0", "row-1", "row-2", "row-3"]
    assert {p.category for p in loaded.prompts} == {"stories"}


def test_a_dataset_suite_runs_and_records_its_source(tmp_path):
    pd.DataFrame(ROWS).to_parquet(tmp_path / "prompts.parquet")
    suite = _suite(tmp_path, "{dataset: ./prompts.parquet, column: prompt, id_column: uid, limit: 3}")
    harness("run", suite, "--models", "2.5m", "--out", tmp_path / "run", "--no-progress", check=0)
    manifest = load_run(tmp_path / "run").manifest
    assert manifest.suite.prompt_source["column"] == "prompt" and manifest.suite.prompt_source["rows"] == 9
    assert [p.id for p in manifest.suite.definition.prompts] == ["q0", "q1", "q2"]
    # the recorded prompts are enough to resume: no dataset access needed
    (tmp_path / "prompts.parquet").unlink()
    harness("run", "--resume", tmp_path / "run", "--no-progress", check=0)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("{dataset: ./prompts.parquet, column: promt}", "prompts.column 'promt' is not a column"),
        ("{dataset: ./prompts.parquet, colum: prompt}", "unknown field 'prompts.colum' (did you mean 'column'?)"),
        ("{dataset: ./missing.parquet}", "does not exist"),
        ("{dataset: ./prompts.parquet, column: uid, limit: 0}", "prompts.limit"),
        ("{dataset: ./notes.md}", "cannot read .md files"),
    ],
)
def test_bad_dataset_specs_are_one_line(tmp_path, spec, expected):
    pd.DataFrame(ROWS).to_parquet(tmp_path / "prompts.parquet")
    (tmp_path / "notes.md").write_text("x")
    result = harness("suites", "validate", _suite(tmp_path, spec), check=2)
    assert expected in result.stderr and result.stderr.count("\n") == 1, result.stderr
