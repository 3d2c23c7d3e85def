"""Experiment tracking: ``--track mlflow`` against a real local MLflow file store, and the public hook."""

from __future__ import annotations

import json

import pytest

mlflow = pytest.importorskip("mlflow")

from tests.harness.test_runner import harness, write_suite  # noqa: E402

FAILING_TRACKER = """
from harness.hookspecs import hookimpl


class Broken:
    name = "broken"
    description = "always fails"

    def log_run(self, run):
        raise ConnectionError("server unreachable")


class Recorder:
    name = "recorder"
    description = "writes what it received next to the run"

    def log_run(self, run):
        (run.path / "tracked.json").write_text(
            __import__("json").dumps({"run_id": run.manifest["run_id"], "models": run.summary["models"]})
        )
        return "recorded"


@hookimpl
def register_trackers(register):
    register(Broken())
    register(Recorder())
"""


def _store_env(tmp_path):
    return {"MLFLOW_TRACKING_URI": f"file:{tmp_path / 'mlruns'}", "MLFLOW_ALLOW_FILE_STORE": "true"}


def test_a_run_is_logged_to_mlflow(tmp_path, tiny_checkpoint, monkeypatch):
    suite = write_suite(tmp_path, n_prompts=2, samples=1, max_new=8)
    out = tmp_path / "run"
    env = _store_env(tmp_path)
    result = harness(
        "run", suite, "--models", tiny_checkpoint, "--out", out, "--no-progress", "--track", "mlflow", env=env
    )
    assert result.returncode == 0, result.stderr
    assert "mlflow: logged to MLflow experiment 't'" in result.stdout
    summary = json.loads((out / "summary.json").read_text())
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # this process reads the store back
    client = mlflow.tracking.MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"])
    experiment = client.get_experiment_by_name("t")
    runs = client.search_runs([experiment.experiment_id])
    parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
    child = next(r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id)
    assert parent.info.run_name == out.name and parent.data.params["suite"] == "t"
    assert parent.data.params["sampling.max_new_tokens"] == "8"
    assert parent.data.tags["harness.status"] == "complete"
    model = str(tiny_checkpoint)
    assert child.data.params["model"] == model
    assert child.data.metrics["perplexity"] == pytest.approx(summary["metrics"]["perplexity"]["models"][model]["mean"])
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"manifest.json", "summary.json", "samples.jsonl", "report.html"} <= artifacts


def test_hook_register_trackers(tmp_path, tiny_checkpoint):
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "trackers.py").write_text(FAILING_TRACKER)
    suite = write_suite(tmp_path, n_prompts=2, samples=1, max_new=8)
    out = tmp_path / "run"
    result = harness(
        "run",
        suite,
        "--models",
        tiny_checkpoint,
        "--out",
        out,
        "--no-progress",
        "--track",
        "broken",
        "--track",
        "recorder",
        "--plugins-dir",
        plugins,
    )
    assert result.returncode == 0, result.stderr
    assert "broken failed (ConnectionError: server unreachable)" in result.stderr
    assert json.loads((out / "tracked.json").read_text())["run_id"] == out.name
    assert (out / "summary.json").is_file() and (out / "report.html").is_file()
    again = harness("track", out, "--to", "broken", "--plugins-dir", plugins)
    assert again.returncode == 1 and "server unreachable" in again.stderr


def test_an_unknown_tracker_fails_before_the_run(tmp_path, tiny_checkpoint):
    out = tmp_path / "never"
    result = harness(
        "run", write_suite(tmp_path), "--models", tiny_checkpoint, "--out", out, "--track", "mlfow", check=2
    )
    assert "did you mean 'mlflow'" in result.stderr and not out.exists()


def test_mlflow_without_a_tracking_uri_says_where_to_point_it(tmp_path, tiny_checkpoint):
    suite = write_suite(tmp_path, n_prompts=1, samples=1, max_new=4)
    out = tmp_path / "run"
    harness("run", suite, "--models", tiny_checkpoint, "--out", out, "--no-progress", check=0)
    result = harness("track", out, "--to", "mlflow", env={"MLFLOW_TRACKING_URI": ""})
    assert result.returncode == 1 and "set MLFLOW_TRACKING_URI" in result.stderr
