"""The one way a finished sample reaches ``samples.jsonl``, whichever executor made it.

Why a class of its own: with ``--executor ray`` a unit that Ray retries after a lost worker (or node)
makes some of its samples a second time, and a streamed sample can arrive after its model was
given up on. The run directory must still hold each (model, prompt, index) once, so every append goes
through :meth:`SampleSink.append`, which skips a key already recorded (by this session or an earlier one
that is being resumed). The local runner uses the same sink, so both executors share one notion of
"done".
"""

from __future__ import annotations

from typing import Any

from harness.records import JsonlAppender
from harness.records.samples import SampleKey


def sample_key(record: dict[str, Any]) -> SampleKey:
    return (record["model"], record["prompt_id"], record["sample_index"])


class SampleSink:
    """Appends sample records to the run's ``samples.jsonl``, each key at most once."""

    def __init__(self, out: JsonlAppender, done: set[SampleKey]) -> None:
        self.out = out
        self.done = done  # shared with the runner: what it sees as done grows as samples land
        self.duplicates = 0  # samples made twice (a retried unit) and dropped

    def append(self, record: dict[str, Any]) -> bool:
        """Append ``record`` unless its key is already recorded; True when it was written."""
        key = sample_key(record)
        if key in self.done:
            self.duplicates += 1
            return False
        self.out.append(record)  # flushed before it returns: durable against a killed driver
        self.done.add(key)
        return True

    def sync(self) -> None:
        self.out.sync()
