"""Run records you can trust, through the real CLI: every case of issue 13 and its neighbours.

Each test damages or aims a real run directory (made once by ``harness run`` on a real tiny
checkpoint) and asserts the outcome a CI job can rely on: the command works, or it exits 2 with one
line naming the file and field, and nothing already produced is lost or overwritten.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from harness.records import load_run
from tests.harness.test_bad_input import assert_one_line_error
from tests.harness.test_runner import harness, write_suite

RUN_FLAGS = ("--no-report", "--no-progress")


@pytest.fixture(scope="module")
def base_run(tmp_path_factory, tiny_checkpoint) -> tuple[Path, Path, str]:
    """(run directory, suite file, model spec): 4 prompts × 2 samples of a real tiny model."""
    root = tmp_path_factory.mktemp("records")
    suite = write_suite(root, n_prompts=4, samples=2, max_new=12)
    run = root / "run"
    harness("run", suite, "--models", tiny_checkpoint, "--out", run, *RUN_FLAGS, check=0)
    return run, suite, str(tiny_checkpoint)


@pytest.fixture
def run_copy(base_run, tmp_path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(base_run[0], copy)
    (copy / ".lock").unlink(missing_ok=True)
    return copy


@pytest.fixture
def baseline_file(base_run, tmp_path) -> Path:
    path = tmp_path / "baseline.json"
    harness("baseline", "export", base_run[0], "-o", path, check=0)
    return path


def _special_paths(tmp_path: Path) -> dict[str, Path]:
    """A FIFO, a character device (a /dev/null twin made here), a symlink to a file, a dangling symlink."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    paths = {"fifo": fifo}
    device = tmp_path / "null"
    try:
        os.mknod(device, stat.S_IFCHR | 0o666, os.makedev(1, 3))
        paths["device"] = device
    except PermissionError:  # not root: the FIFO stands for every special file
        pass
    target = tmp_path / "precious.txt"
    target.write_text("keep me\n")
    (tmp_path / "link").symlink_to(target)
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere.txt")
    paths.update(link=tmp_path / "link", dangling=tmp_path / "dangling")
    return paths


# ----------------------------------------------------------------------------- row 1: outputs never clobber
@pytest.mark.parametrize("kind", ["fifo", "device", "link", "dangling"])
def test_output_paths_that_are_not_regular_files_are_refused(kind, base_run, baseline_file, tmp_path):
    paths = _special_paths(tmp_path)
    if kind not in paths:
        pytest.skip("mknod needs root")
    target = paths[kind]
    before = os.lstat(target)
    run = base_run[0]
    commands = [
        ("report", run, "-o", target),
        ("baseline", "export", run, "-o", target),
        ("gate", run, "--baseline", baseline_file, "--json", target),
        ("gate", run, "--baseline", baseline_file, "--junit", target),
        ("gate", run, "--baseline", baseline_file, "--markdown", target),
    ]
    for args in commands:
        result = harness(*args)
        assert_one_line_error(result, str(target))
        after = os.lstat(target)
        assert (after.st_mode, after.st_ino, after.st_size) == (before.st_mode, before.st_ino, before.st_size), args
    assert (tmp_path / "precious.txt").read_text() == "keep me\n"
    assert not (tmp_path / "nowhere.txt").exists()


@pytest.mark.parametrize("kind", ["dangling", "under_file", "proc"])
def test_run_out_paths_that_cannot_hold_a_run_are_refused_before_work(kind, base_run, tmp_path):
    _, suite, model = base_run
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    out = {
        "dangling": _special_paths(tmp_path)["dangling"],
        "under_file": plain / "run",
        "proc": Path("/proc/self/harness-run"),
    }[kind]
    result = harness("run", suite, "--models", model, "--out", out, *RUN_FLAGS)
    assert_one_line_error(result, "--out")
    assert not (tmp_path / "nowhere.txt").exists() and plain.read_text() == "x"


# ----------------------------------------------------------------------------- row 7: directories and paths under files
def test_report_and_export_into_a_directory_or_under_a_file_leave_nothing(base_run, tmp_path):
    run = base_run[0]
    directory = tmp_path / "existing"
    directory.mkdir()
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    for args in (
        ("report", run, "-o", directory),
        ("baseline", "export", run, "-o", directory),
        ("report", run, "-o", plain / "r.html"),
        ("baseline", "export", run, "-o", plain / "b.json"),
    ):
        assert_one_line_error(harness(*args))
    assert list(directory.iterdir()) == [] and plain.read_text() == "x"
    assert not [p for p in tmp_path.rglob("*.tmp")]


# ----------------------------------------------------------------------------- row 2 and item 4: missing evidence
@pytest.mark.parametrize("damage", ["null", "string"])
def test_gate_never_passes_on_a_damaged_baseline(damage, base_run, baseline_file, tmp_path):
    data = json.loads(baseline_file.read_text())
    block = next(iter(data["rounds"][0]["models"].values()))
    column = block["columns"].index("perplexity")
    for row in block["rows"]:
        row[column] = None if damage == "null" else "7.5"
    baseline_file.write_text(json.dumps(data))
    for extra in ((), ("--fail-on-inconclusive",)):
        result = harness("gate", base_run[0], "--baseline", baseline_file, *extra)
        assert_one_line_error(result, "perplexity")


@pytest.mark.parametrize(
    "field, value, needle",
    [("status", "great", "status"), ("kind", "speed", "kind"), ("higher_is_better", "yes", "higher_is_better")],
)
def test_baseline_fields_are_validated(field, value, needle, base_run, baseline_file):
    data = json.loads(baseline_file.read_text())
    if field == "status":
        next(iter(data["rounds"][0]["models"].values()))["status"] = value
    else:
        data["metrics"]["perplexity"][field] = value
    baseline_file.write_text(json.dumps(data))
    assert_one_line_error(harness("gate", base_run[0], "--baseline", baseline_file), needle)


# ----------------------------------------------------------------------------- row 3 / item 7: the lock
def test_lock_symlink_is_refused_and_its_target_untouched(base_run, run_copy, tmp_path):
    _, suite, _ = base_run
    victim = tmp_path / "victim.txt"
    victim.write_text("precious contents\n")
    (run_copy / ".lock").symlink_to(victim)
    result = harness("run", suite, "--resume", run_copy, *RUN_FLAGS)
    assert_one_line_error(result, ".lock")
    assert victim.read_text() == "precious contents\n"


def test_lock_hard_link_is_refused_and_never_truncated(base_run, run_copy, tmp_path):
    _, suite, _ = base_run
    victim = tmp_path / "victim.txt"
    victim.write_text("precious contents that are longer than a pid\n")
    os.link(victim, run_copy / ".lock")
    assert_one_line_error(harness("run", suite, "--resume", run_copy, *RUN_FLAGS), ".lock")
    assert victim.read_text() == "precious contents that are longer than a pid\n"


@pytest.mark.parametrize("name", ["samples.jsonl", "manifest.json", "model_metrics.jsonl"])
def test_resume_refuses_run_files_that_are_symlinks_and_leaves_their_targets(name, base_run, run_copy, tmp_path):
    _, suite, _ = base_run
    victim = tmp_path / "victim.txt"
    (run_copy / name).rename(victim)
    with open(victim, "a") as handle:
        handle.write('{"torn": ')  # a torn-looking tail the resume would otherwise cut
    before = victim.read_bytes()
    (run_copy / name).symlink_to(victim)
    assert_one_line_error(harness("run", suite, "--resume", run_copy, *RUN_FLAGS), name)
    assert victim.read_bytes() == before


# ----------------------------------------------------------------------------- row 4 / item 3: resume counts each sample once
def test_resume_refuses_duplicated_lines_naming_the_line(base_run, run_copy):
    _, suite, _ = base_run
    lines = (run_copy / "samples.jsonl").read_text().splitlines(keepends=True)
    with open(run_copy / "samples.jsonl", "a") as handle:
        handle.writelines(lines[:3])
    for args in (
        ("run", suite, "--resume", run_copy, *RUN_FLAGS),
        ("report", run_copy),
        ("baseline", "export", run_copy),
    ):
        assert_one_line_error(harness(*args), f"samples.jsonl:{len(lines) + 1}", "already recorded at line 1")


def test_resume_refuses_samples_of_another_suite(base_run, run_copy, tmp_path):
    _, suite, model = base_run
    other_suite = write_suite(tmp_path, name="other", n_prompts=2, samples=1, max_new=8)
    other = tmp_path / "other_run"
    harness("run", other_suite, "--models", model, "--out", other, *RUN_FLAGS, check=0)
    with open(run_copy / "samples.jsonl", "a") as handle:
        handle.write((other / "samples.jsonl").read_text())
    assert_one_line_error(harness("run", suite, "--resume", run_copy, *RUN_FLAGS), "suite 'other'")


def test_a_sample_with_another_seed_is_foreign(base_run, run_copy):
    lines = (run_copy / "samples.jsonl").read_text().splitlines()
    record = json.loads(lines[0])
    record["seed"] += 1  # same key, made with other sampling settings
    lines[0] = json.dumps(record)
    (run_copy / "samples.jsonl").write_text("\n".join(lines) + "\n")
    assert_one_line_error(harness("report", run_copy), "samples.jsonl:1", "seed")


def test_summary_n_is_the_number_of_distinct_samples_after_a_resume(base_run, run_copy):
    _, suite, _ = base_run
    lines = (run_copy / "samples.jsonl").read_text().splitlines(keepends=True)
    (run_copy / "samples.jsonl").write_text("".join(lines[:5]))  # as if killed after 5 samples
    manifest = json.loads((run_copy / "manifest.json").read_text())
    manifest["status"], manifest["models"][0]["status"] = "interrupted", "interrupted"
    (run_copy / "manifest.json").write_text(json.dumps(manifest))
    harness("run", suite, "--resume", run_copy, *RUN_FLAGS, check=0)
    run = load_run(run_copy)
    summary = json.loads((run_copy / "summary.json").read_text())
    assert len(run.samples) == 8
    assert summary["metrics"]["perplexity"]["models"][run.models[0]]["n"] + summary["metrics"]["perplexity"]["models"][
        run.models[0]
    ]["missing"] == len({(r["prompt_id"], r["sample_index"]) for r in run.samples})


# ----------------------------------------------------------------------------- row 5: damaged files
DAMAGE = {
    "metrics.json": lambda d: (d / "metrics.json").write_text('{"perplexity": {"higher_is_better": "down"}}'),
    "non-dict line": lambda d: (d / "samples.jsonl").write_text("[1, 2, 3]\n" + (d / "samples.jsonl").read_text()),
    "manifest list": lambda d: (d / "manifest.json").write_text("[]"),
    "deep JSON": lambda d: (d / "manifest.json").write_text("[" * 100_000 + "]" * 100_000),
    "NaN metric": lambda d: (d / "samples.jsonl").write_text(
        (d / "samples.jsonl").read_text().replace('"perplexity": ', '"perplexity": NaN, "x": ', 1)
    ),
    "truncated samples": lambda d: (d / "samples.jsonl").write_text(
        "".join((d / "samples.jsonl").read_text().splitlines(keepends=True)[:-2])
    ),
    "missing summary": lambda d: (d / "summary.json").unlink(),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_run_files_are_one_line_input_errors_everywhere(damage, base_run, run_copy, baseline_file, tmp_path):
    _, suite, _ = base_run
    DAMAGE[damage](run_copy)
    commands = [
        ("report", run_copy, "-o", tmp_path / "r.html"),
        ("baseline", "export", run_copy, "-o", tmp_path / "b.json"),
        ("gate", run_copy, "--baseline", baseline_file),
        ("gate", base_run[0], "--baseline", run_copy),
    ]
    if damage not in ("truncated samples", "missing summary"):  # a resume legitimately completes those
        commands.append(("run", suite, "--resume", run_copy, *RUN_FLAGS))
    for args in commands:
        result = harness(*args)
        assert_one_line_error(result)  # exit 2, never 1 (which CI reads as a regression)
    assert not (tmp_path / "r.html").exists() and not (tmp_path / "b.json").exists()


def test_a_run_of_today_s_main_reads_back_unchanged():
    fixture = Path(__file__).resolve().parents[1] / "fixtures" / "run_v1"
    run = load_run(fixture)
    original = json.loads((fixture / "manifest.json").read_text())
    assert run.manifest.to_json() == original
    assert run.manifest.settings.dtype == "float32" and len(run.samples) == 12
    assert run.models == ["2.5m", "5m"] and run.model_metrics[1]["metrics"]["peak_mem_mb"] > 0


# ----------------------------------------------------------------------------- row 8 / item 8: merge is atomic
def _shards(base_run, tmp_path) -> list[Path]:
    _, suite, model = base_run
    shards = []
    for k in (1, 2):
        out = tmp_path / f"shard{k}"
        harness("run", suite, "--models", model, "--shard", f"{k}/2", "--out", out, *RUN_FLAGS, check=0)
        shards.append(out)
    return shards


def test_a_killed_merge_leaves_no_complete_looking_directory_and_a_retry_works(base_run, tmp_path):
    shards = _shards(base_run, tmp_path)
    out = tmp_path / "merged"
    # die (as kill -9 would) right after the manifest is written, before the summaries
    code = (
        "import os, sys\n"
        "import harness.summary as summary\n"
        "summary.write_summaries = lambda run: os._exit(137)\n"
        "from harness.merge import merge_runs\n"
        "from pathlib import Path\n"
        "merge_runs([Path(p) for p in sys.argv[1:3]], Path(sys.argv[3]))\n"
    )
    killed = subprocess.run([sys.executable, "-c", code, *map(str, shards), str(out)], capture_output=True, timeout=900)
    assert killed.returncode == 137
    assert not out.exists()  # nothing claims to be a run, let alone a complete one
    assert_one_line_error(harness("gate", out, "--baseline", shards[0]))
    merged = harness("merge", *shards, "-o", out)
    assert merged.returncode == 0, merged.stderr
    run = load_run(out)
    assert run.manifest.status == "complete" and len(run.samples) == 8 and (out / "summary.json").is_file()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".merged")] == []  # stale staging removed


# ----------------------------------------------------------------------------- row 6 / item 6: disk full
def _mount_tmpfs(path: Path, size_kb: int) -> bool:
    path.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(path)], capture_output=True, timeout=60
    )
    return result.returncode == 0


@pytest.fixture
def small_disk(tmp_path):
    mount = tmp_path / "disk"
    if os.geteuid() != 0 or not _mount_tmpfs(mount, 2048):
        pytest.skip("mounting a tmpfs needs root (or a machine that allows it)")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], capture_output=True, timeout=60)


def _fill(disk: Path, leave_bytes: int) -> Path:
    """Leave about ``leave_bytes`` free on ``disk`` with one filler file."""
    info = os.statvfs(disk)
    free = info.f_bavail * info.f_frsize
    filler = disk / "filler"
    with open(filler, "wb") as handle:
        handle.write(b"\0" * max(0, free - leave_bytes))
    return filler


def test_disk_full_mid_run_is_recorded_as_interrupted_and_resumes(small_disk, tiny_checkpoint, tmp_path):
    suite = write_suite(tmp_path, n_prompts=30, samples=2, max_new=24)
    filler = _fill(small_disk, (1 << 20) + 48 * 1024)  # the run's reserve, plus room for some samples
    out = small_disk / "run"
    result = harness("run", suite, "--models", tiny_checkpoint, "--out", out, *RUN_FLAGS)
    assert_one_line_error(result, "no space left", "--resume")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "interrupted"
    kept = load_run(out).samples
    assert 0 < len(kept) < 60
    filler.unlink()  # space is back
    harness("run", suite, "--resume", out, *RUN_FLAGS, check=0)
    run = load_run(out)
    assert run.manifest.status == "complete" and len(run.samples) == 60
    assert {(r["prompt_id"], r["sample_index"]) for r in kept} <= {
        (r["prompt_id"], r["sample_index"]) for r in run.samples
    }


def test_a_disk_full_at_the_start_leaves_no_directory(small_disk, tiny_checkpoint, tmp_path):
    suite = write_suite(tmp_path, n_prompts=2, samples=1, max_new=8)
    _fill(small_disk, 64 * 1024)
    out = small_disk / "run"
    assert_one_line_error(harness("run", suite, "--models", tiny_checkpoint, "--out", out, *RUN_FLAGS), "space")
    assert not out.exists()


def test_a_failed_write_removes_its_temporary(small_disk, base_run):
    _fill(small_disk, 16 * 1024)  # far less than a report
    result = harness("report", base_run[0], "-o", small_disk / "report.html")
    assert_one_line_error(result, "cannot write")
    assert [p.name for p in small_disk.iterdir()] == ["filler"]


# ----------------------------------------------------------------------------- row 9: a dropped plugin's section
def test_a_dropped_plugin_section_never_removes_another_plugins_metric(tmp_path):
    import warnings

    from harness.plugins import build_registry

    (tmp_path / "odd.py").write_text(
        "from harness import hookimpl\n"
        "from harness.types import Metric\n\n"
        "@hookimpl\ndef register_metrics(register):\n"
        "    register(Metric(name='odd_tokens', unit='', higher_is_better=None, description='odd',\n"
        "                    compute=lambda ctx: 1.0, kind='count'))\n"
    )
    (tmp_path / "zz_half.py").write_text(
        "from harness import hookimpl\n"
        "from harness.report import ReportSection\n\n"
        "@hookimpl\ndef register_report_sections(register):\n"
        "    register(ReportSection(name='odd_tokens', title='x', render=lambda ctx: ''))\n"
        "    raise RuntimeError('half-registered')\n"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        registry = build_registry(tmp_path)
    assert "odd_tokens" in registry.metrics and registry.owner[("metric", "odd_tokens")] == "odd"
    assert "zz_half" not in registry.plugins
