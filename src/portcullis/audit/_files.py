"""The files of one audit log: opening them safely, the writers' lock, rotated names, tails.

A log ``audit.jsonl`` lives with its siblings ``audit.jsonl.anchor`` (the MACed chain head),
``audit.jsonl.lock`` (the writers' lock) and the rotated files ``audit.jsonl.1``,
``audit.jsonl.2`` … numbered from the oldest. Rotated files are never renamed again, so a reader
that is following the chain never sees a file change its name under it.
"""

from __future__ import annotations

import errno
import os
import re
import stat
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from portcullis._exceptions import AuditError

if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
    import msvcrt
else:
    import fcntl

__all__ = [
    "DEFAULT_LOG_NAME",
    "FileLock",
    "Snapshot",
    "anchor_path",
    "default_log_path",
    "ensure_dir",
    "lock_path",
    "log_files",
    "next_rotated_name",
    "open_private",
    "open_readonly",
    "open_snapshot",
    "pread",
    "pwrite",
    "read_lines",
    "reverse_lines",
    "rotated_files",
    "write_all",
]

_NOFOLLOW: Final = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC: Final = getattr(os, "O_CLOEXEC", 0)
_BINARY: Final = getattr(os, "O_BINARY", 0)
# Opening a FIFO for writing blocks until a reader appears; with O_NONBLOCK it fails or returns
# at once, and regular files ignore the flag.
_NONBLOCK: Final = getattr(os, "O_NONBLOCK", 0)
_CHUNK: Final = 64 * 1024
DEFAULT_LOG_NAME: Final = "audit.jsonl"


def default_log_path() -> Path:
    """Return ``<state dir>/audit.jsonl``, the log used when neither policy nor flag names one."""
    from portcullis._state import state_dir

    return state_dir() / DEFAULT_LOG_NAME


def anchor_path(path: Path) -> Path:
    """Return the anchor file kept beside the log ``path``."""
    return path.with_name(path.name + ".anchor")


def lock_path(path: Path) -> Path:
    """Return the lock file the writers of ``path`` share."""
    return path.with_name(path.name + ".lock")


def rotated_files(path: Path) -> list[Path]:
    """Return the rotated files of the log ``path``, oldest first (``.1``, ``.2`` …)."""
    pattern = re.compile(re.escape(path.name) + r"\.([1-9][0-9]*)")
    numbered: list[tuple[int, Path]] = []
    try:
        entries = list(os.scandir(path.parent))
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise AuditError(f"cannot list the audit directory {path.parent}: {exc.strerror}") from exc
    for entry in entries:
        match = pattern.fullmatch(entry.name)
        if match:
            numbered.append((int(match.group(1)), Path(entry.path)))
    return [p for _, p in sorted(numbered)]


def log_files(path: Path) -> list[Path]:
    """Return every file of the chain in order: the rotated files, then the live log."""
    files = rotated_files(path)
    if os.path.lexists(path):
        files.append(path)
    return files


def next_rotated_name(path: Path) -> Path:
    """Return the name the live log gets when it is rotated: one past the newest number."""
    existing = rotated_files(path)
    number = int(existing[-1].name.rsplit(".", 1)[1]) + 1 if existing else 1
    return path.with_name(f"{path.name}.{number}")


def ensure_dir(directory: Path) -> None:
    """Create the log's directory (``0700``) when it is missing; AuditError when it cannot be."""
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise AuditError(f"cannot create the audit directory {directory}: {reason}") from exc


def open_private(path: Path, flags: int, what: str) -> int:
    """Open (creating ``0600``) a file of the log; refuse symlinks and non-regular files."""
    try:
        fd = os.open(path, flags | os.O_CREAT | _NOFOLLOW | _CLOEXEC | _NONBLOCK | _BINARY, 0o600)
    except OSError as exc:
        raise AuditError(_open_error(path, what, exc)) from exc
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise AuditError(f"{what} {path} is not a regular file; refusing to write to it")
        # A log that others can read leaks arguments and reasons; tighten it when it is ours.
        if os.name == "posix" and st.st_mode & 0o077 and st.st_uid == os.geteuid():
            os.fchmod(fd, 0o600)
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_readonly(path: Path) -> int:
    """Open a file of the log for reading without following a symlink."""
    return os.open(path, os.O_RDONLY | _NOFOLLOW | _CLOEXEC | _BINARY)


def _open_error(path: Path, what: str, exc: OSError) -> str:
    # Linux and macOS say ELOOP for O_NOFOLLOW on a symlink; FreeBSD says EMLINK.
    if exc.errno in (errno.ELOOP, errno.EMLINK):
        return f"{what} {path} is a symlink; refusing to write through it"
    if exc.errno == errno.ENOENT:
        return f"cannot open the {what} {path}: its directory does not exist"
    return f"cannot open the {what} {path}: {exc.strerror or exc}"


def write_all(fd: int, data: bytes) -> None:
    """Write all of ``data``; a short write (a signal, a full disk) continues where it stopped."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        if written <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        view = view[written:]


def pwrite(fd: int, data: bytes, offset: int) -> None:
    """Write ``data`` at ``offset`` (Windows has no ``os.pwrite``; callers hold the lock)."""
    if hasattr(os, "pwrite"):
        if os.pwrite(fd, data, offset) != len(data):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return
    os.lseek(fd, offset, os.SEEK_SET)  # pragma: no cover - Windows
    write_all(fd, data)  # pragma: no cover - Windows


def pread(fd: int, size: int, offset: int) -> bytes:
    """Read up to ``size`` bytes at ``offset``."""
    if hasattr(os, "pread"):
        return os.pread(fd, size, offset)
    os.lseek(fd, offset, os.SEEK_SET)  # pragma: no cover - Windows
    return os.read(fd, size)  # pragma: no cover - Windows


def reverse_lines(fd: int, end: int) -> Iterator[tuple[int, bytes]]:
    """Yield ``(offset, line)`` from byte ``end`` backwards; lines keep their newline.

    The first line yielded is the one that ends at ``end``; it lacks the newline when the file
    does not end with one (a torn write).
    """
    pos = end
    pending = b""
    while pos > 0:
        start = max(0, pos - _CHUNK)
        chunk = pread(fd, pos - start, start)
        pos = start
        pending = chunk + pending
        # The newline that ends the last line belongs to that line, not to a split point.
        search_to = len(pending) - 1 if pending.endswith(b"\n") else len(pending)
        cut = pending.rfind(b"\n", 0, search_to)
        while cut >= 0:
            yield pos + cut + 1, pending[cut + 1 :]
            pending = pending[: cut + 1]
            cut = pending.rfind(b"\n", 0, len(pending) - 1)
    if pending:
        yield 0, pending


@dataclass(slots=True)
class Snapshot:
    """The chain's files opened together under the lock, with their sizes at that moment."""

    anchor_data: bytes | None  # None: no anchor file
    files: list[tuple[Path, int, int]]  # (path, fd, size), oldest first

    def close(self) -> None:
        """Close every file descriptor the snapshot holds."""
        files, self.files = self.files, []
        for _, fd, _ in files:
            os.close(fd)


def open_snapshot(path: Path) -> Snapshot:
    """Open the anchor and every file of the log ``path`` under the (shared) writers' lock.

    Reading sizes under the lock means the files end on whole records and the anchor matches
    them, even while gateways write; the lock is held for a few system calls only.
    """
    lock: FileLock | None = None
    try:
        lock_fd = open_readonly(lock_path(path))
    except OSError:
        lock_fd = -1  # no writer has run here (or a read-only copy): nothing to wait for
    snap = Snapshot(None, [])
    try:
        if lock_fd >= 0:
            lock = FileLock(lock_fd)
            lock.acquire(shared=True)
        try:
            fd = open_readonly(anchor_path(path))
        except FileNotFoundError:
            pass
        else:
            try:
                snap.anchor_data = _read_all(fd)
            finally:
                os.close(fd)
        for file in log_files(path):
            fd = open_readonly(file)
            st = os.fstat(fd)
            snap.files.append((file, fd, st.st_size))
            if not stat.S_ISREG(st.st_mode):
                raise AuditError(f"audit log {file} is not a regular file")
    except AuditError:
        snap.close()
        raise
    except OSError as exc:
        snap.close()
        where = exc.filename or path
        raise AuditError(f"cannot read the audit log {where}: {exc.strerror or exc}") from exc
    finally:
        if lock is not None:
            lock.release()
        if lock_fd >= 0:
            os.close(lock_fd)
    return snap


def _read_all(fd: int) -> bytes:
    parts = []
    while chunk := os.read(fd, 65536):
        parts.append(chunk)
    return b"".join(parts)


def read_lines(fd: int, size: int, offset: int = 0) -> Iterator[bytes]:
    """Yield the lines of ``fd`` from ``offset`` up to ``size``; the last may lack its newline."""
    remaining = size - offset
    if remaining <= 0:
        return
    os.lseek(fd, offset, os.SEEK_SET)
    with os.fdopen(fd, "rb", buffering=1 << 20, closefd=False) as fh:
        for line in fh:
            if len(line) >= remaining:
                yield line[:remaining]
                return
            remaining -= len(line)
            yield line


class FileLock:
    """An exclusive lock on a file, shared by every process that writes one log.

    ``fcntl.flock`` on POSIX. On Windows ``msvcrt.locking``, which retries for about ten seconds
    and then fails (an AuditError: the call is refused rather than left unaudited), and which
    has no shared mode, so readers take it exclusively there.
    """

    def __init__(self, fd: int) -> None:
        self._fd = fd

    if sys.platform == "win32":  # pragma: no cover - exercised on Windows only

        def acquire(self, *, shared: bool = False) -> None:
            """Block until the lock is held."""
            os.lseek(self._fd, 0, os.SEEK_SET)
            msvcrt.locking(self._fd, msvcrt.LK_LOCK, 1)

        def release(self) -> None:
            """Release the lock."""
            os.lseek(self._fd, 0, os.SEEK_SET)
            msvcrt.locking(self._fd, msvcrt.LK_UNLCK, 1)

    else:

        def acquire(self, *, shared: bool = False) -> None:
            """Block until the lock is held; ``shared`` lets readers in together."""
            fcntl.flock(self._fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)

        def release(self) -> None:
            """Release the lock."""
            fcntl.flock(self._fd, fcntl.LOCK_UN)
