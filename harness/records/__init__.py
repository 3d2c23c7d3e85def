"""The run-record layer: the only code that reads or writes run directories and baseline files.

Runner, merge, report and gate go through it, so every file the harness reads is validated once
(types, finite numbers, unique sample keys, samples of the run's own suite) and every file it writes
is written atomically to a path that was checked not to clobber anything. See docs/run-directory.md
for the formats and docs/reliability.md for what happens to damaged or hostile inputs.
"""

from harness.records.files import (
    JsonlAppender,
    RunLock,
    check_output_dir,
    check_output_file,
    read_json,
    repair_torn_tail,
    write_bytes_atomic,
    write_json_atomic,
    write_text_atomic,
)
from harness.records.manifest import (
    FORMAT_VERSION,
    Manifest,
    ModelEntry,
    RunSettings,
    ShardSpec,
    SuiteRecord,
    Throughput,
)
from harness.records.run import (
    MANIFEST,
    METRICS,
    MODEL_METRICS,
    SAMPLES,
    SUMMARY_CSV,
    SUMMARY_JSON,
    Run,
    check_run_files,
    ensure_new_dir,
    load_run,
    new_run_dir,
    read_manifest,
    write_manifest,
    write_metric_registry,
    write_summary_files,
)

__all__ = [
    "FORMAT_VERSION",
    "MANIFEST",
    "METRICS",
    "MODEL_METRICS",
    "SAMPLES",
    "SUMMARY_CSV",
    "SUMMARY_JSON",
    "JsonlAppender",
    "Manifest",
    "ModelEntry",
    "Run",
    "RunLock",
    "RunSettings",
    "ShardSpec",
    "SuiteRecord",
    "Throughput",
    "check_output_dir",
    "check_output_file",
    "check_run_files",
    "ensure_new_dir",
    "load_run",
    "new_run_dir",
    "read_json",
    "read_manifest",
    "repair_torn_tail",
    "write_bytes_atomic",
    "write_json_atomic",
    "write_manifest",
    "write_metric_registry",
    "write_summary_files",
    "write_text_atomic",
]
