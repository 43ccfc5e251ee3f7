"""Reading the log without verifying it: all records, the last few, new ones, a filter.

These helpers trust the file; ``verify`` is what says whether to. Lines that are not JSON
objects (a torn write) are skipped; pass ``errors`` to learn where.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from portcullis.audit._files import (
    open_readonly,
    open_snapshot,
    pread,
    read_lines,
    reverse_lines,
    rotated_files,
)
from portcullis.audit._record import canonical, parse_record

__all__ = ["follow", "parse_time", "query", "read_records", "tail"]


def read_records(path: Path, *, errors: list[str] | None = None) -> Iterator[dict[str, Any]]:
    """Yield every record of the log ``path``, oldest first, through its rotated files."""
    snap = open_snapshot(Path(path))
    try:
        for file, fd, size in snap.files:
            for number, line in enumerate(read_lines(fd, size), 1):
                rec = parse_record(line)
                if rec is None:
                    if errors is not None:
                        errors.append(f"{file} line {number}: not a JSON object")
                    continue
                yield rec
    finally:
        snap.close()


def tail(path: Path, n: int = 10) -> list[dict[str, Any]]:
    """Return the last ``n`` records of the log ``path``, oldest first."""
    snap = open_snapshot(Path(path))
    try:
        return _last(snap.files, n)
    finally:
        snap.close()


def _last(files: list[tuple[Path, int, int]], n: int) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for _, fd, size in reversed(files):
        if len(found) >= n:
            break
        for _, line in reverse_lines(fd, size):
            rec = parse_record(line)
            if rec is not None:
                found.append(rec)
                if len(found) >= n:
                    break
    found.reverse()
    return found


def follow(
    path: Path,
    n: int = 10,
    *,
    interval: float = 0.25,
    stop: Callable[[], bool] | None = None,
) -> Iterator[dict[str, Any]]:
    """Yield the last ``n`` records, then each new one as it is written, across rotations.

    Polls every ``interval`` seconds; ends when ``stop()`` returns true (checked between polls)
    or the consumer stops iterating. KeyboardInterrupt passes through (Ctrl-C ends it).
    """
    path = Path(path)
    snap = open_snapshot(path)
    fd = -1
    offset = 0
    try:
        if snap.files and snap.files[-1][0] == path:
            _, fd, offset = snap.files.pop()
        yield from _last([*snap.files, (path, fd, offset)] if fd >= 0 else snap.files, n)
        snap.close()
        pending = b""
        while stop is None or not stop():
            data = _read_from(fd, offset) if fd >= 0 else b""
            if not data:
                following = _next_file(path, fd)
                if following is None:  # still the live file: wait for more
                    time.sleep(interval)
                    continue
                # Ours was rotated away. Writers rename a file only after their last write to
                # it, so one more read reaches its true end.
                data = _read_from(fd, offset) if fd >= 0 else b""
                if not data:
                    if fd >= 0:
                        os.close(fd)
                    fd, offset, pending = -1, 0, b""
                    with contextlib.suppress(FileNotFoundError):
                        fd = open_readonly(following)
                    continue
            offset += len(data)
            lines = (pending + data).split(b"\n")
            pending = lines.pop()
            for line in lines:
                rec = parse_record(line)
                if rec is not None:
                    yield rec
    finally:
        snap.close()
        if fd >= 0:
            os.close(fd)


def _read_from(fd: int, offset: int) -> bytes:
    parts = []
    while chunk := pread(fd, 1 << 20, offset):
        parts.append(chunk)
        offset += len(chunk)
    return b"".join(parts)


def _next_file(path: Path, fd: int) -> Path | None:
    """Return the file that follows ``fd``'s in the chain, or None while ``fd`` is the live one.

    Going to the next file rather than straight to the live one matters when the log rotated
    more than once between two polls: the files in between are read too.
    """
    try:
        live: os.stat_result | None = os.lstat(path)
    except FileNotFoundError:
        live = None  # mid-rotation: renamed, not yet recreated
    if fd < 0:
        return path if live is not None else None
    fst = os.fstat(fd)
    mine = (fst.st_dev, fst.st_ino)
    if live is not None and (live.st_dev, live.st_ino) == mine:
        return None
    rotated = rotated_files(path)
    for index in range(len(rotated) - 1, -1, -1):
        try:
            st = os.lstat(rotated[index])
        except FileNotFoundError:
            continue
        if (st.st_dev, st.st_ino) == mine:
            if index + 1 < len(rotated):
                return rotated[index + 1]
            break
    return path if live is not None else None


def parse_time(value: str | datetime) -> str:
    """Return ``value`` as the log's timestamp form, for string comparison with ``ts``.

    Accepts RFC 3339 / ISO 8601 (``2026-11-24T19:40:01Z``, ``…+01:00``, a bare date); a time
    without an offset is taken as UTC. Raises ValueError when it is not a time.
    """
    if isinstance(value, str):
        value = datetime.fromisoformat(value.strip())
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond:06d}Z"


def query(
    path: Path,
    *,
    server: str | None = None,
    tool: str | None = None,
    decision: str | None = None,
    rule: str | None = None,
    principal: str | None = None,
    method: str | None = None,
    since: str | datetime | None = None,
    until: str | datetime | None = None,
    where: Mapping[str, str] | None = None,
    errors: list[str] | None = None,
) -> Iterator[dict[str, Any]]:
    """Yield the records of ``path`` that match every filter given, oldest first.

    Field filters are case-sensitive ``fnmatch`` globs (``search_*``), as in the policy; a
    record without the field does not match. ``where`` filters any other field the same way
    (non-string values are matched as their JSON, e.g. ``{"enforced": "false"}``). ``since``
    is inclusive and ``until`` exclusive, so consecutive windows do not overlap.
    """
    wanted = {
        "server": server,
        "tool": tool,
        "decision": decision,
        "rule": rule,
        "principal": principal,
        "method": method,
        **(where or {}),
    }
    patterns = [(k, v) for k, v in wanted.items() if v is not None]
    low = parse_time(since) if since is not None else None
    high = parse_time(until) if until is not None else None
    for rec in read_records(path, errors=errors):
        if low is not None or high is not None:
            ts = rec.get("ts")
            if not isinstance(ts, str):
                continue
            if (low is not None and ts < low) or (high is not None and ts >= high):
                continue
        if all(_matches(rec.get(k), pattern) for k, pattern in patterns):
            yield rec


def _matches(value: Any, pattern: str) -> bool:
    if value is None:
        return False
    text = value if isinstance(value, str) else canonical(value).decode()
    return fnmatchcase(text, pattern)
