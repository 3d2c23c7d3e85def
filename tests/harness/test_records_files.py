"""The run directory's append-only sample log: flushed per line, fsynced on a timer and at close."""

import json
import os

from harness.records import files as rundir


def _counting_fsync(monkeypatch):
    calls = []
    real = os.fsync

    def fsync(fd):
        calls.append(fd)
        real(fd)

    monkeypatch.setattr(rundir.os, "fsync", fsync)
    return calls


def test_every_line_is_readable_by_another_reader_before_the_next_append(tmp_path, monkeypatch):
    calls = _counting_fsync(monkeypatch)
    path = tmp_path / "samples.jsonl"
    out = rundir.JsonlAppender(path, fsync_interval=3600)
    for i in range(5):
        out.append({"i": i, "text": "café"})
        # a killed process keeps what the kernel already has: another reader sees the line now
        assert [json.loads(line)["i"] for line in path.read_text(encoding="utf-8").splitlines()] == list(range(i + 1))
    assert calls == []  # no fsync per line within the interval
    out.close()
    assert len(calls) == 1  # close makes everything durable
    out.close()  # idempotent
    assert len(calls) == 1


def test_fsync_runs_once_the_interval_has_passed(tmp_path, monkeypatch):
    calls = _counting_fsync(monkeypatch)
    with rundir.JsonlAppender(tmp_path / "s.jsonl", fsync_interval=0.0) as out:
        for i in range(3):
            out.append({"i": i})
    assert len(calls) == 4  # one per append (interval 0) and one at close


def test_sync_makes_lines_durable_before_the_interval(tmp_path, monkeypatch):
    calls = _counting_fsync(monkeypatch)
    with rundir.JsonlAppender(tmp_path / "s.jsonl", fsync_interval=3600) as out:
        out.append({"i": 0})
        assert calls == []
        out.sync()  # what the runner does before every manifest update
        assert len(calls) == 1
    assert len(calls) == 2
