"""``AuditLog``: append HMAC-chained records to a JSONL file, safely from several processes.

Each append, under an exclusive lock on ``<log>.lock``: check that the live file is still the
one this writer last wrote (one ``lstat``); if not, find the head again; add ``ts``, ``seq``,
``prev`` and ``mac``; write the line with one ``os.write``; update the anchor with one
``pwrite``. Nothing is buffered in user space, so a record the gateway was told is written is
in the kernel before the call it describes goes on.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import threading
import time
import weakref
from pathlib import Path
from types import TracebackType
from typing import Any, Final

from portcullis._exceptions import AuditError
from portcullis.audit._anchor import Anchor, read_anchor_fd, write_anchor
from portcullis.audit._files import (
    FileLock,
    anchor_path,
    ensure_dir,
    lock_path,
    next_rotated_name,
    open_private,
    open_readonly,
    reverse_lines,
    rotated_files,
    write_all,
)
from portcullis.audit._record import (
    CHAIN_FIELDS,
    RECOVERY_FIELD,
    Signer,
    canonical,
    format_ts,
    parse_record,
)

__all__ = ["DEFAULT_ROTATE_BYTES", "AuditLog"]

DEFAULT_ROTATE_BYTES: Final = 100 * 1024 * 1024
_RESERVED: Final = CHAIN_FIELDS | {RECOVERY_FIELD}
_LOG_FLAGS: Final = os.O_RDWR | os.O_APPEND

_open_logs: weakref.WeakSet[AuditLog] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    # A forked child shares the parent's open file descriptions, and flock belongs to those,
    # so parent and child would hold "one" lock and interleave writes. Reopen in the child.
    for log in list(_open_logs):
        log._mark_forked()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class AuditLog:
    """An append-only, HMAC-chained audit log (JSON Lines) with an anchor and rotation.

    ``AuditLog(path, key)`` opens (creating ``0600``, and the directory ``0700``) the log, its
    anchor and its lock file, and finds the chain head. Every failure to open or write raises
    AuditError naming the path: the gateway refuses the call it could not record.
    Thread-safe, and safe for several processes writing one log.
    """

    def __init__(self, path: Path, key: bytes, *, rotate_bytes: int = DEFAULT_ROTATE_BYTES) -> None:
        if rotate_bytes <= 0:
            raise AuditError(f"rotate_bytes must be positive, not {rotate_bytes}")
        self.path = Path(path)
        self.rotate_bytes = rotate_bytes
        self._signer = Signer(key)
        self._anchor_path = anchor_path(self.path)
        self._mutex = threading.Lock()
        self._fd = -1
        self._lock_fd = -1
        self._anchor_fd = -1
        self._lock: FileLock | None = None
        self._closed = False
        self._forked = False
        # (st_dev, st_ino, st_size) of the live file as this writer left it; None: find the
        # head again. While it matches, no other writer has appended and nothing is re-read.
        self._state: tuple[int, int, int] | None = None
        self._seq = -1
        self._mac = ""
        self._genesis = ""
        self._recovery: dict[str, Any] = {}
        self._newline = False
        self._open()
        _open_logs.add(self)

    # -- public ---------------------------------------------------------------------------

    def append(self, record: dict[str, Any]) -> dict[str, Any]:
        """Chain, MAC and write one record; return it as written (a new dict).

        ``record`` holds content fields (``server``, ``tool``, ``decision`` …); ``None`` values
        are left out. Raises AuditError when the record is not JSON, uses a field the log sets
        (``ts``, ``seq``, ``prev``, ``mac``, ``recovery``), or cannot be written.
        """
        rec = {k: v for k, v in record.items() if v is not None}
        if not _RESERVED.isdisjoint(rec):
            names = ", ".join(sorted(_RESERVED.intersection(rec)))
            raise AuditError(f"audit record sets {names}, which the log sets itself")
        with self._mutex:
            if self._closed:
                raise AuditError(f"audit log {self.path} is closed")
            if self._forked or self._lock is None:
                # After fork, or after a reopen that failed: open afresh (or raise again).
                self._reopen()
            lock = self._lock
            assert lock is not None
            try:
                lock.acquire()
            except OSError as exc:
                raise AuditError(f"cannot lock the audit log {self.path}: {exc}") from exc
            try:
                return self._append_locked(rec)
            finally:
                lock.release()

    def digest_args(self, value: Any) -> str:
        """Return the keyed digest of ``value`` with this log's key (see ``digest_args``)."""
        return "hmac-sha256:" + self._signer.args(canonical(value))

    def close(self) -> None:
        """Close the log's files; later appends raise AuditError."""
        with self._mutex:
            if self._closed:
                return
            self._closed = True
            self._close_fds()
        _open_logs.discard(self)

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"AuditLog({str(self.path)!r}, seq={self._seq})"

    # -- the hot path ---------------------------------------------------------------------

    def _append_locked(self, rec: dict[str, Any]) -> dict[str, Any]:
        try:
            st = os.lstat(self.path)
            current: tuple[int, int, int] | None = (st.st_dev, st.st_ino, st.st_size)
        except FileNotFoundError:
            current = None
        except OSError as exc:
            raise AuditError(f"cannot stat the audit log {self.path}: {exc.strerror}") from exc
        if current is None or current != self._state:
            self._sync()
        seq = self._seq + 1
        rec["seq"] = seq
        rec["prev"] = self._mac
        # Taken under the lock, so chain order and time order agree (unless the clock steps).
        rec["ts"] = format_ts(time.time_ns())
        if self._recovery:
            rec[RECOVERY_FIELD] = self._recovery
        mac = self._signer.record(canonical(rec))
        rec["mac"] = mac
        line = canonical(rec) + b"\n"
        assert self._state is not None
        dev, ino, size = self._state
        if size > 0 and size + len(line) > self.rotate_bytes:
            self._rotate()
            dev, ino, size = self._state
        elif self._newline:
            # The file ends in a torn line; never glue a record onto it.
            line = b"\n" + line
        try:
            write_all(self._fd, line)
        except OSError as exc:
            self._state = None  # part of the line may be on disk: look again next time
            raise AuditError(
                f"cannot write the audit log {self.path}: {exc.strerror or exc}"
            ) from exc
        self._state = (dev, ino, size + len(line))
        self._seq = seq
        self._mac = mac
        self._recovery = {}
        self._newline = False
        try:
            write_anchor(
                self._anchor_fd, Anchor(seq, mac, self.path.name, self._genesis), self._signer
            )
        except OSError as exc:
            raise AuditError(
                f"cannot update the audit anchor {self._anchor_path}: {exc.strerror or exc}"
            ) from exc
        return rec

    def _rotate(self) -> None:
        target = next_rotated_name(self.path)
        self._state = None  # until the new file is open: after a failure, look again
        try:
            # Closed first: Windows cannot rename a file that is open without FILE_SHARE_DELETE.
            os.close(self._fd)
            self._fd = -1
            os.rename(self.path, target)
            self._fd = open_private(self.path, _LOG_FLAGS, "audit log")
            fst = os.fstat(self._fd)
        except OSError as exc:
            raise AuditError(
                f"cannot rotate the audit log {self.path} to {target}: {exc.strerror or exc}"
            ) from exc
        self._state = (fst.st_dev, fst.st_ino, 0)
        # A torn line, if any, stays at the end of the rotated file, where verify reports it.
        self._newline = False

    # -- opening and finding the head -------------------------------------------------------

    def _open(self) -> None:
        ensure_dir(self.path.parent)
        try:
            self._lock_fd = open_private(lock_path(self.path), os.O_RDWR, "audit lock file")
            self._lock = FileLock(self._lock_fd)
            self._anchor_fd = open_private(self._anchor_path, os.O_RDWR, "audit anchor")
            try:
                self._lock.acquire()
            except OSError as exc:
                raise AuditError(f"cannot lock the audit log {self.path}: {exc}") from exc
            try:
                self._sync()
            finally:
                self._lock.release()
        except BaseException:
            self._close_fds()
            raise

    def _sync(self) -> None:
        """Find the chain head again (under the lock): this writer is new or another wrote."""
        try:
            self._sync_unchecked()
        except OSError as exc:
            self._state = None
            raise AuditError(
                f"cannot read the audit log {self.path}: {exc.strerror or exc}"
            ) from exc

    def _sync_unchecked(self) -> None:
        self._reopen_if_replaced()
        fst = os.fstat(self._fd)
        recovery: dict[str, Any] = {}
        head, torn, newline = _tail_head(self._fd, fst.st_size)
        if torn:
            recovery["torn_bytes"] = torn
        if head is None:
            head = _rotated_head(self.path)
        anchor, anchor_state = read_anchor_fd(self._anchor_fd, self._signer)
        if anchor is not None:
            genesis = anchor.genesis
            if head is None or head[0] < anchor.seq:
                if anchor.seq >= 0:
                    # Records the anchor vouches for are gone. Continue from the anchor, so
                    # the gap stays in the chain for verify to report.
                    first_missing = head[0] + 1 if head is not None else 0
                    recovery["truncated"] = {"from_seq": first_missing, "to_seq": anchor.seq}
                head = (anchor.seq, anchor.mac)
            elif head[0] == anchor.seq and head[1] != anchor.mac:
                recovery["anchor"] = "mismatch"
        elif head is None:
            genesis = secrets.token_hex(32)
            head = (-1, genesis)
            if anchor_state == "invalid":
                recovery["anchor"] = "invalid"
            # A new chain's anchor exists before its first record, so a log that has records
            # and no anchor always means the anchor was removed.
            os.ftruncate(self._anchor_fd, 0)
            fresh = Anchor(-1, genesis, self.path.name, genesis)
            write_anchor(self._anchor_fd, fresh, self._signer)
        else:
            # Records but no usable anchor: carry on, and say so in the next record, so that
            # deleting the anchor (to hide a truncation) cannot go unnoticed.
            recovery["anchor"] = anchor_state
            genesis = _first_prev(self.path) or secrets.token_hex(32)
        self._seq, self._mac = head
        self._genesis = genesis
        self._recovery = recovery
        self._newline = newline
        self._state = (fst.st_dev, fst.st_ino, fst.st_size)

    def _reopen_if_replaced(self) -> None:
        try:
            st: os.stat_result | None = os.lstat(self.path)
        except FileNotFoundError:
            st = None
        if self._fd >= 0 and st is not None:
            fst = os.fstat(self._fd)
            if (fst.st_dev, fst.st_ino) == (st.st_dev, st.st_ino):
                return
        # Rotated by another writer, removed, or never opened.
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        self._fd = open_private(self.path, _LOG_FLAGS, "audit log")

    def _mark_forked(self) -> None:
        # Runs in the child right after fork, single-threaded: the mutex may have been held
        # by a thread that does not exist here.
        self._mutex = threading.Lock()
        self._forked = True

    def _reopen(self) -> None:
        self._forked = False
        self._close_fds()
        self._state = None
        self._open()

    def _close_fds(self) -> None:
        for name in ("_fd", "_anchor_fd", "_lock_fd"):
            fd = getattr(self, name)
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
                setattr(self, name, -1)
        self._lock = None


def _as_head(line: bytes) -> tuple[int, str] | None:
    rec = parse_record(line)
    if rec is None:
        return None
    seq, mac = rec.get("seq"), rec.get("mac")
    if isinstance(seq, int) and isinstance(mac, str):
        return seq, mac
    return None


def _tail_head(fd: int, size: int) -> tuple[tuple[int, str] | None, int, bool]:
    """Return (head, torn bytes, needs a newline) for the file ``fd`` of ``size`` bytes."""
    torn = 0
    newline = False
    for index, (_, line) in enumerate(reverse_lines(fd, size)):
        if index == 0 and not line.endswith(b"\n"):
            newline = True
            head = _as_head(line)
            # A prefix of a canonical record is never a whole JSON object, so a line that
            # parses lost only its newline: it is the head, not a torn fragment.
            if head is not None:
                return head, 0, True
            torn = len(line)
            continue
        head = _as_head(line)
        if head is not None:
            return head, torn, newline
    return None, torn, newline


def _rotated_head(path: Path) -> tuple[int, str] | None:
    for older in reversed(rotated_files(path)):
        fd = open_readonly(older)
        try:
            head, _, _ = _tail_head(fd, os.fstat(fd).st_size)
        finally:
            os.close(fd)
        if head is not None:
            return head
    return None


def _first_prev(path: Path) -> str | None:
    """Return the genesis id from the chain's first record, when that record is still there."""
    files = [*rotated_files(path), path]
    try:
        with open(files[0], "rb") as fh:
            rec = parse_record(fh.readline())
    except OSError:
        return None
    if rec is not None and rec.get("seq") == 0 and isinstance(rec.get("prev"), str):
        prev: str = rec["prev"]
        return prev
    return None
