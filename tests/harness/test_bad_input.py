"""Bad input through the real CLI: one line naming the file/field/model and the fix, exit code 2,
no traceback, and nothing already produced is lost."""

import json
import shutil

import pytest

from harness.records import load_run
from tests.harness.test_runner import harness, write_suite


def assert_one_line_error(result, *needles):
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.strip().splitlines() if line.startswith("error:")]
    assert lines, result.stderr
    for needle in needles:
        assert needle in result.stderr.replace("\n", " "), result.stderr


@pytest.mark.parametrize(
    "models, needles",
    [
        ("10mm", ["'10mm'", "did you mean '10m'"]),
        ("tinylmm:random/2.5m", ["unknown backend 'tinylmm'", "did you mean 'tinylm'"]),
        ("tinylm:random/3m", ["unknown preset '3m'"]),
        ("tinylm:/does/not/exist", ["tinylm:/does/not/exist"]),
    ],
)
def test_unknown_models_are_named_with_a_suggestion(tmp_path, models, needles):
    result = harness("run", write_suite(tmp_path, n_prompts=1, samples=1), "--models", models, "--out", tmp_path / "r")
    assert_one_line_error(result, *needles)


def test_misspelled_metric_in_suite(tmp_path):
    suite = write_suite(tmp_path, extra="metrics: [perplexity, repetiton_rate]\n")
    assert_one_line_error(
        harness("run", suite, "--models", "tinylm:random/2.5m"), "repetiton_rate", "did you mean 'repetition_rate'"
    )


def test_metric_needing_a_reference_names_the_missing_field(tmp_path):
    suite = write_suite(tmp_path, extra="metrics: [heldout_bpb]\n")
    assert_one_line_error(harness("run", suite, "--models", "tinylm:random/2.5m"), "heldout_bpb", "'reference'")


def test_missing_reference_file(tmp_path):
    suite = write_suite(tmp_path, extra="reference: {path: nowhere.txt}\n")
    assert_one_line_error(
        harness("run", suite, "--models", "tinylm:random/2.5m", "--out", tmp_path / "r"),
        "reference.path",
        "nowhere.txt",
    )


def test_non_utf8_and_malformed_suites(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(b"name: s\nprompts: [{id: a, text: caf\xe9}]\n")
    assert_one_line_error(harness("run", bad, "--models", "2.5m"), "not valid UTF-8")
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: s\nprompts: [\n")
    assert_one_line_error(harness("suites", "validate", broken), "malformed YAML", str(broken))


def test_truncated_checkpoint_fails_that_model_and_keeps_the_others(tmp_path, tiny_checkpoint):
    broken = tmp_path / "broken_ckpt"
    shutil.copytree(tiny_checkpoint, broken)
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    suite = write_suite(tmp_path, n_prompts=2, samples=1)
    result = harness("run", suite, "--models", f"tinylm:random/2.5m,{broken}", "--out", tmp_path / "r", "--no-report")
    assert_one_line_error(result, "model.safetensors", "cannot read weights")
    run = load_run(tmp_path / "r")
    assert len(run.samples) == 2 and {m.status for m in run.manifest.models} == {"ok", "failed"}
    assert (tmp_path / "r" / "summary.json").exists()


def test_missing_weights_and_tokenizer_vocab_mismatch(tmp_path, tiny_checkpoint, stories):
    from tinylm_ref.tokenizer import train_tokenizer

    no_weights = tmp_path / "no_weights"
    shutil.copytree(tiny_checkpoint, no_weights)
    (no_weights / "model.safetensors").unlink()
    suite = write_suite(tmp_path, n_prompts=1, samples=1)
    assert_one_line_error(harness("run", suite, "--models", no_weights, "--out", tmp_path / "a"), "no weights file")
    mismatch = tmp_path / "mismatch"
    shutil.copytree(tiny_checkpoint, mismatch)
    train_tokenizer(stories, vocab_size=400).save(str(mismatch / "tokenizer.json"))
    assert_one_line_error(
        harness("run", suite, "--models", mismatch, "--out", tmp_path / "b"),
        "tokenizer has 400 tokens",
        "vocab_size is 320",
    )


def test_config_with_unknown_field(tmp_path, tiny_checkpoint):
    bad = tmp_path / "bad_config"
    shutil.copytree(tiny_checkpoint, bad)
    config = json.loads((bad / "config.json").read_text())
    config["n_layer"] = config.pop("n_layers")
    (bad / "config.json").write_text(json.dumps(config))
    result = harness("run", write_suite(tmp_path, n_prompts=1, samples=1), "--models", bad, "--out", tmp_path / "r")
    assert_one_line_error(result, "config.json", "n_layer")


def test_prompt_longer_than_the_context(tmp_path, tiny_checkpoint):
    suite = tmp_path / "long.yaml"
    suite.write_text(
        f'name: long\nwarmup: 0\nprompts:\n  - {{id: ok, text: Hello}}\n  - {{id: huge, text: "{"word " * 400}"}}\n'
    )
    result = harness("run", suite, "--models", tiny_checkpoint, "--out", tmp_path / "r", "--no-report")
    assert_one_line_error(result, "prompt 'huge'", "context is 64", "shorten the prompt")
    run = load_run(tmp_path / "r")  # every prompt is checked before the first sample: no wasted work
    assert run.samples == [] and run.manifest.models[0].status == "failed"


def test_max_new_tokens_beyond_context_stops_at_the_context(tmp_path, tiny_checkpoint):
    suite = write_suite(tmp_path, n_prompts=2, samples=1, max_new=500)
    harness("run", suite, "--models", tiny_checkpoint, "--out", tmp_path / "r", "--no-report", check=0)
    for record in load_run(tmp_path / "r").samples:
        assert record["stop_reason"] in ("eos", "context")
        if record["stop_reason"] == "context":
            assert record["prompt_tokens"] + len(record["output_ids"]) == 64


def test_existing_output_directory_is_never_overwritten(tmp_path):
    out = tmp_path / "r"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    result = harness(
        "run", write_suite(tmp_path, n_prompts=1, samples=1), "--models", "tinylm:random/2.5m", "--out", out
    )
    assert_one_line_error(result, "not an empty directory")
    assert (out / "precious.txt").read_text() == "keep me" and len(list(out.iterdir())) == 1


def test_output_path_that_is_a_file_is_refused(tmp_path):
    target = tmp_path / "a_file"
    target.write_text("keep")
    result = harness(
        "run", write_suite(tmp_path, n_prompts=1, samples=1), "--models", "tinylm:random/2.5m", "--out", target
    )
    assert_one_line_error(result, "not an empty directory")
    assert target.read_text() == "keep"


def test_bad_threads_and_model_options_are_one_line_errors(tmp_path):
    suite = write_suite(tmp_path, n_prompts=1, samples=1)
    assert_one_line_error(harness("run", suite, "--models", "tinylm:random/2.5m", "--threads", "-1"), "--threads")
    result = harness(
        "run", suite, "--models", "tinylm:random/2.5m", "--model-option", "seed=abc", "--out", tmp_path / "r"
    )
    assert_one_line_error(result, "seed", "integer")


def test_truncated_tokenizer_is_an_input_error(tmp_path, tiny_checkpoint):
    broken = tmp_path / "broken_tok"
    shutil.copytree(tiny_checkpoint, broken)
    (broken / "tokenizer.json").write_text((broken / "tokenizer.json").read_text()[:500])
    result = harness("run", write_suite(tmp_path, n_prompts=1, samples=1), "--models", broken, "--out", tmp_path / "r")
    assert_one_line_error(result, "tokenizer.json")


def test_resume_with_other_batch_size_or_shard_is_refused(tmp_path):
    suite = write_suite(tmp_path, n_prompts=2, samples=1)
    harness(
        "run",
        suite,
        "--models",
        "tinylm:random/2.5m",
        "--out",
        tmp_path / "r",
        "--shard",
        "1/2",
        "--no-report",
        check=0,
    )
    assert_one_line_error(harness("run", suite, "--resume", tmp_path / "r", "--batch-size", "4"), "--batch-size")
    assert_one_line_error(harness("run", suite, "--resume", tmp_path / "r", "--shard", "2/2"), "shard")


def test_suite_validation_checks_metrics_judge_and_reference(tmp_path):
    suite = write_suite(tmp_path, extra="metrics: [perplexty]\n")
    assert_one_line_error(harness("suites", "validate", suite), "did you mean 'perplexity'")
    suite = write_suite(tmp_path, name="j", extra="judge: nosuchmodel\n")
    assert_one_line_error(harness("suites", "validate", suite), "nosuchmodel")
    suite = write_suite(tmp_path, name="r", extra="reference: {path: missing.txt}\n")
    assert_one_line_error(harness("suites", "validate", suite), "missing.txt")
    suite = write_suite(tmp_path, name="d", extra="device: gpu\n")
    assert_one_line_error(harness("suites", "validate", suite), "device")


def test_resume_with_a_different_suite_is_refused(tmp_path):
    suite = write_suite(tmp_path, n_prompts=1, samples=1)
    harness("run", suite, "--models", "tinylm:random/2.5m", "--out", tmp_path / "r", "--no-report", check=0)
    before = (tmp_path / "r" / "samples.jsonl").read_text()
    other = write_suite(tmp_path, name="t", n_prompts=2, samples=1)
    assert_one_line_error(harness("run", other, "--resume", tmp_path / "r"), "different suite")
    assert (tmp_path / "r" / "samples.jsonl").read_text() == before


def test_usage_errors_are_one_line(tmp_path):
    suite = write_suite(tmp_path, n_prompts=1, samples=1)
    result = harness("run", suite, "--models", "a", "b")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert_one_line_error(harness("run", suite), "--models is required")
    assert_one_line_error(harness("run", suite, "--models", "2.5m", "--shard", "3/2"), "--shard")
    assert_one_line_error(harness("run", suite, "--models", "2.5m", "--model-option", "novalue"), "KEY=VALUE")


def test_unsupported_dtype_for_the_reference_decoder(tmp_path):
    suite = write_suite(tmp_path, n_prompts=1, samples=1)
    result = harness("run", suite, "--models", "tinylm:random/2.5m", "--dtype", "float16", "--out", tmp_path / "r")
    assert_one_line_error(result, "tinylm:random/2.5m", "'float16'", "float32 or bfloat16")


def test_bfloat16_with_batching_names_the_conflict(tmp_path):
    suite = write_suite(tmp_path, n_prompts=2, samples=1)
    result = harness(
        "run",
        suite,
        "--models",
        "tinylm:random/2.5m",
        "--dtype",
        "bfloat16",
        "--batch-size",
        "2",
        "--out",
        tmp_path / "r",
    )
    assert_one_line_error(result, "tinylm:random/2.5m", "--batch-size")


def test_resume_with_another_dtype_is_refused_and_keeps_the_samples(tmp_path):
    suite = write_suite(tmp_path, n_prompts=2, samples=1)
    run = tmp_path / "r"
    harness("run", suite, "--models", "tinylm:random/2.5m", "--out", run, "--no-report", check=0)
    before = (run / "samples.jsonl").read_text()
    result = harness("run", suite, "--resume", run, "--dtype", "bfloat16")
    assert_one_line_error(result, str(run), "--dtype float32", "resume without --dtype")
    assert (run / "samples.jsonl").read_text() == before


def test_directory_specs_say_what_is_missing(tmp_path):
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "config.json").write_text("{}")
    suite = write_suite(tmp_path, n_prompts=1, samples=1)
    assert_one_line_error(harness("run", suite, "--models", str(ckpt)), "tokenizer.json", "config.json")
    missing = f"{tmp_path}/nothere"
    assert_one_line_error(harness("run", suite, "--models", missing), "no such directory", f"hf:{missing}")


def test_option_conflicts_are_refused_before_any_run_directory_exists(tmp_path):
    suite = write_suite(tmp_path, n_prompts=2, samples=1)
    out = tmp_path / "r"
    for extra in (["--dtype", "float16"], ["--dtype", "bfloat16", "--batch-size", "2"]):
        result = harness("run", suite, "--models", "tinylm:random/2.5m", "--out", out, *extra)
        assert_one_line_error(result, "tinylm:random/2.5m")
        assert not out.exists()
