"""Executors other than this process: where a run's (model, prompt, index) samples are made.

The local executor is the runner itself (:mod:`harness.runner`); :mod:`harness.executors.ray_executor`
spreads the same work over a Ray cluster. Both take their work from ``SuiteRun.pending_items`` and write
every finished sample through one :class:`harness.sample_sink.SampleSink`, so a run directory does not
depend on which executor filled it. Nothing here imports Ray until a Ray run starts.
"""
