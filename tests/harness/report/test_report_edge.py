"""Runs that went wrong still give a readable report: no samples, failed models, torn last line, partial."""

from __future__ import annotations

import json

from harness.report import write_report


def test_failed_run_without_samples_still_reports(make_run, tmp_path):
    run = make_run(models=("a", "b"))
    (run / "samples.jsonl").write_text("")
    (run / "model_metrics.jsonl").unlink()
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["status"] = "failed"
    manifest["models"][0].update(status="failed", error="RuntimeError: <boom>")
    manifest["models"][1].update(status="failed", error="RuntimeError: also")
    (run / "manifest.json").write_text(json.dumps(manifest))
    text = write_report([run], tmp_path / "r.html").read_text(encoding="utf-8")
    assert "No samples in these runs" in text and "No metric values in this run" in text
    assert "RuntimeError: &lt;boom&gt;" in text and "results are partial" in text


def test_torn_last_line_is_skipped(make_run, tmp_path):
    run = make_run(models=("a",), n_prompts=5)
    with open(run / "samples.jsonl", "a", encoding="utf-8") as handle:
        handle.write('{"model": "a", "prom')  # the sample in flight when the process was killed
    text = write_report([run], tmp_path / "r.html").read_text(encoding="utf-8")
    assert 'data-section="samples"' in text


def test_lone_surrogate_in_output_does_not_break_the_file(make_run, tmp_path):
    run = make_run(models=("a",), n_prompts=3)
    lines = (run / "samples.jsonl").read_text(encoding="utf-8").splitlines()
    record = json.loads(lines[1])
    record["output_text"] = "broken \ud800 byte"
    lines[1] = json.dumps(record)  # ensure_ascii keeps the lone surrogate as \\ud800
    (run / "samples.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = write_report([run], tmp_path / "r.html")
    assert "broken ? byte" in out.read_text(encoding="utf-8")
