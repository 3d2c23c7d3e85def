"""Files the harness writes and reads, made safe: no clobbering, atomic writes, bounded parsing.

Why one module: every output the harness produces (run directories, reports, baselines, gate results)
is a file a user names on the command line. A careless path (``-o /dev/null`` as root, a symlink into
another project, a FIFO, a directory) must be refused *before* any work starts, and a write that fails
half-way (disk full, no permission) must leave neither a torn file nor a stray temporary behind.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from harness.errors import DamagedRecordError, UserError

#: Pseudo filesystems where a "file" is a kernel interface, never a place for results.
_PSEUDO_ROOTS = ("/proc", "/sys", "/dev")
_WRITABLE_UNDER_DEV = ("/dev/shm",)


def _nearest_existing(path: Path) -> Path:
    """The closest ancestor of ``path`` (or itself) that exists, without following a final symlink."""
    current = path
    while not os.path.lexists(current) and current != current.parent:
        current = current.parent
    return current


def _check_parent(path: Path, flag: str) -> None:
    """The directory ``path`` would be created in must be (or become) a real, writable directory."""
    absolute = Path(os.path.abspath(path))
    ancestor = _nearest_existing(absolute.parent)
    if not ancestor.is_dir():
        raise UserError(f"{flag} {path}: {ancestor} is a file, not a directory; choose a path outside it")
    real = os.path.realpath(ancestor)
    pseudo = any(real == root or real.startswith(root + "/") for root in _PSEUDO_ROOTS)
    if pseudo and not any(real == ok or real.startswith(ok + "/") for ok in _WRITABLE_UNDER_DEV):
        raise UserError(f"{flag} {path}: {real} is a system directory, not a place for results; choose another path")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise UserError(f"{flag} {path}: {ancestor} is not writable; choose another path")


def _lstat(path: Path, flag: str) -> os.stat_result | None:
    """``lstat`` of an output path; None when nothing is there (or a parent is not a directory, which
    the parent check then names)."""
    try:
        return os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        raise UserError(f"{flag} {path}: cannot use this path ({exc.strerror}); choose another path") from None


def check_output_file(path: Path, flag: str) -> Path:
    """Refuse an output path that is anything but absent or a regular file (before any work starts).

    Symlinks are refused even when they point at a regular file: replacing one would silently write
    somewhere the user did not name, or (a dangling one) create a file elsewhere.
    """
    info = _lstat(path, flag)
    if info is not None:
        if stat.S_ISLNK(info.st_mode):
            raise UserError(f"{flag} {path}: is a symbolic link; give the path of a regular file")
        if stat.S_ISDIR(info.st_mode):
            raise UserError(f"{flag} {path}: is a directory; give a file path, e.g. {Path(path) / 'out'}")
        if not stat.S_ISREG(info.st_mode):
            raise UserError(f"{flag} {path}: is not a regular file (a device, FIFO or socket); give a file path")
    _check_parent(path, flag)
    return path


def check_output_dir(path: Path, flag: str) -> Path:
    """Refuse an output directory that exists and is not an empty real directory (or sits somewhere odd)."""
    info = _lstat(path, flag)
    if info is not None:
        if stat.S_ISLNK(info.st_mode):
            raise UserError(f"{flag} {path}: is a symbolic link; give the path of a new directory")
        if not stat.S_ISDIR(info.st_mode) or any(Path(path).iterdir()):
            raise UserError(f"{flag} {path}: exists and is not an empty directory; choose a new path")
    _check_parent(path, flag)
    return path


class OutputWriteError(UserError):
    """A write that failed on the filesystem (no space, no permission); ``errno`` says which."""

    def __init__(self, message: str, errno_: int | None) -> None:
        super().__init__(message)
        self.errno = errno_


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` (an OSError, or the harness's own write error) means the disk or quota is full."""
    return isinstance(exc, (OSError, OutputWriteError)) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


def _write_failed(path: Path, exc: OSError) -> OutputWriteError:
    hint = "free some space and retry" if is_disk_full(exc) else "choose another path"
    return OutputWriteError(f"{path}: cannot write ({exc.strerror or exc}); {hint}", exc.errno)


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write via a temporary file in the same directory and rename it over ``path``.

    A crash never leaves a half-written file; a failed write (ENOSPC, EACCES) removes its temporary and
    raises a one-line :class:`UserError`. The target is re-checked just before the rename, so a symlink
    or special file planted meanwhile is refused rather than replaced.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        if os.path.lexists(path):
            check_output_file(path, "output")
        os.replace(tmp, path)
    except OSError as exc:
        _unlink_quietly(tmp)
        raise _write_failed(path, exc) from None
    except BaseException:
        _unlink_quietly(tmp)
        raise


def _unlink_quietly(path: Path) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def write_text_atomic(path: Path, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def dump_json(data: Any) -> str:
    """The harness's JSON style: indented, UTF-8, and never NaN/Infinity (not JSON, not portable)."""
    return json.dumps(data, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def write_json_atomic(path: Path, data: Any) -> None:
    write_text_atomic(path, dump_json(data))


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not valid JSON")


def parse_json(text: str, where: str) -> Any:
    """``json.loads`` that refuses NaN/Infinity and turns every parse failure into one line naming ``where``.

    Deeply nested input (a hostile 100k-deep array) exhausts Python's recursion limit inside the
    decoder; that is a damaged file, not a crash.
    """
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise DamagedRecordError(f"{where}: invalid JSON at line {exc.lineno} column {exc.colno} ({exc.msg})") from None
    except ValueError as exc:
        raise DamagedRecordError(f"{where}: {exc}") from None
    except RecursionError:
        raise DamagedRecordError(f"{where}: JSON nested too deeply to be a harness file") from None


def read_json(path: Path, what: str) -> Any:
    """Read and parse one JSON file, with one-line errors for missing, unreadable or invalid files."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DamagedRecordError(f"{path}: missing; the {what} is incomplete") from None
    except UnicodeDecodeError:
        raise DamagedRecordError(f"{path}: not UTF-8 text; the {what} is damaged") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror})") from None
    return parse_json(text, str(path))


def read_jsonl(path: Path) -> Iterator[tuple[int, Any]]:
    """``(line number, value)`` for each non-empty line.

    A last line without its newline is what a hard kill leaves while a line is being written (appends
    are one ``write`` of the line and its newline): it is skipped. Any other bad line is damage.
    """
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror})") from None
    lines = data.split(b"\n")
    torn = lines.pop()  # b"" when the file ends with a newline
    del torn
    for number, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise DamagedRecordError(f"{path}:{number}: not UTF-8 text; the run directory is damaged") from None
        yield number, parse_json(text, f"{path}:{number}")


def repair_torn_tail(path: Path) -> None:
    """Drop a partial last line left by a hard kill, so appends start on a clean line."""
    if not os.path.lexists(path):
        return
    fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW)  # never cut the tail of a file a symlink points at
    with os.fdopen(fd, "rb+") as handle:
        data = handle.read()
        if data and not data.endswith(b"\n"):
            handle.truncate(data.rfind(b"\n") + 1)


class JsonlAppender:
    """Appends one JSON object per line; durable against a killed process at once, against a crashed OS
    at the next ``fsync``.

    Every line is written with one ``write`` and flushed to the kernel before ``append`` returns, so
    ``kill -9`` loses at most the line in flight and leaves it torn (no newline), which readers skip.
    ``fsync`` runs on the first append at least ``fsync_interval`` seconds after the previous one, on
    ``sync()`` (before every manifest update, so the manifest never claims samples the disk may not
    have) and on close. Per line it cost ~0.4 ms on a quiet disk and several ms on a busy one, most of
    the harness's own overhead for the small presets (docs/performance.md).
    """

    def __init__(self, path: Path, fsync_interval: float = 1.0) -> None:
        self.path = path
        self.fsync_interval = fsync_interval
        self._fd: int | None = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        self._last_sync = time.monotonic()

    def append(self, record: dict[str, Any]) -> None:
        """Write one line with unbuffered writes: nothing is held back to be flushed later (after a full
        disk freed up, a buffered tail could land behind the lines of a resumed run)."""
        view = memoryview((json.dumps(record, ensure_ascii=False, allow_nan=False) + "\n").encode("utf-8"))
        while view:
            view = view[os.write(self._fd, view) :]
        now = time.monotonic()
        if now - self._last_sync >= self.fsync_interval:
            os.fsync(self._fd)
            self._last_sync = now

    def sync(self) -> None:
        """Make every line appended so far durable now (before a manifest update that relies on them)."""
        os.fsync(self._fd)
        self._last_sync = time.monotonic()

    def close(self) -> None:
        """Close; an fsync that fails still closes the descriptor and re-raises."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def __enter__(self) -> JsonlAppender:
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:
            self.close()
        else:  # already failing: keep the original error, lose nothing more than the line in flight
            with contextlib.suppress(OSError):
                self.close()


class RunLock:
    """An exclusive lock on a run directory, so two processes never write into the same one
    (two ``--resume`` of one directory, say). Released when the process ends, even by ``kill -9``.

    The lock file is opened without following symlinks and never truncated: a ``.lock`` planted as a
    symlink or hard link to another file is refused, so locking can never overwrite anything else.
    """

    PID_WIDTH = 20

    def __init__(self, directory: Path) -> None:
        self.path = Path(directory) / ".lock"
        self._fd: int | None = None

    def __enter__(self) -> RunLock:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise UserError(f"{self.path}: is a symbolic link; remove it (harness creates its own lock)") from None
            raise UserError(f"{self.path}: cannot open the run lock ({exc.strerror})") from None
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
            os.close(fd)
            raise UserError(f"{self.path}: is not a plain lock file (special file or hard link); remove it and retry")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, self.PID_WIDTH, 0).decode("ascii", "replace").strip() or "another process"
            os.close(fd)
            raise UserError(
                f"{self.path.parent}: in use by harness process {holder}; wait for it or use another directory"
            ) from None
        self._fd = fd
        # the holder's pid for the message above, padded in place (never a truncation); a full disk
        # must not stop the lock: the pid is only for the message
        with contextlib.suppress(OSError):
            os.pwrite(fd, str(os.getpid()).ljust(self.PID_WIDTH).encode("ascii"), 0)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
