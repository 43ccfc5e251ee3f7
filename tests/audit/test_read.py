"""Reading the log: read_records, tail, follow and query."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from portcullis.audit import AuditLog, follow, parse_time, query, read_records, tail

from .conftest import lines, sample, set_lines, write_log


def test_read_records_spans_rotated_files(log_path: Path, key: bytes) -> None:
    """read_records yields every record oldest first, through the rotated files."""
    write_log(log_path, key, 30, rotate_bytes=2000)
    assert [r["seq"] for r in read_records(log_path)] == list(range(30))


def test_read_records_skips_and_reports_bad_lines(log_path: Path, key: bytes) -> None:
    """Lines that are not JSON objects are skipped and listed in errors."""
    write_log(log_path, key, 3)
    set_lines(log_path, [*lines(log_path)[:2], b"garbage\n", lines(log_path)[2]])
    errors: list[str] = []
    assert [r["seq"] for r in read_records(log_path, errors=errors)] == [0, 1, 2]
    assert errors == [f"{log_path} line 3: not a JSON object"]


def test_tail_returns_the_last_records(log_path: Path, key: bytes) -> None:
    """tail(n) returns the last n records, oldest first."""
    write_log(log_path, key, 10)
    assert [r["seq"] for r in tail(log_path, 3)] == [7, 8, 9]
    assert [r["seq"] for r in tail(log_path, 50)] == list(range(10))
    assert tail(log_path, 0) == []


def test_tail_reaches_into_rotated_files(log_path: Path, key: bytes) -> None:
    """A tail reads older files when the live one holds fewer than n records."""
    write_log(log_path, key, 30, rotate_bytes=2000)
    assert [r["seq"] for r in tail(log_path, 12)] == list(range(18, 30))


def test_tail_skips_a_torn_line(log_path: Path, key: bytes) -> None:
    """A torn last line is not returned by tail."""
    write_log(log_path, key, 3)
    set_lines(log_path, [*lines(log_path), b'{"seq":3,'])
    assert [r["seq"] for r in tail(log_path, 2)] == [1, 2]


def _collect_follow(
    path: Path, key: bytes, *, appends: int, rotate: int, interval: float = 0.01
) -> list[int]:
    seen: list[int] = []
    done = threading.Event()

    def writer() -> None:
        with AuditLog(path, key, rotate_bytes=rotate) as log:
            for i in range(appends):
                log.append(sample(i))
                time.sleep(0.002)
        done.set()

    deadline = time.monotonic() + 20
    thread = threading.Thread(target=writer)
    started = False
    for rec in follow(path, 2, interval=interval, stop=lambda: time.monotonic() > deadline):
        seen.append(rec["seq"])
        if not started:
            if len(seen) == 2:
                thread.start()
                started = True
        elif len(seen) == 2 + appends:
            break
    thread.join()
    return seen


def test_follow_prints_tail_then_new_records(log_path: Path, key: bytes) -> None:
    """Follow yields the last n records, then each record appended later, in order."""
    write_log(log_path, key, 5)
    assert _collect_follow(log_path, key, appends=20, rotate=10**9) == list(range(3, 25))


def test_follow_continues_across_rotation(log_path: Path, key: bytes) -> None:
    """Follow keeps going when the live file is rotated under it, losing nothing."""
    write_log(log_path, key, 5, rotate_bytes=3000)
    assert _collect_follow(log_path, key, appends=40, rotate=3000) == list(range(3, 45))


def test_follow_reads_every_file_of_several_rotations(log_path: Path, key: bytes) -> None:
    """Follow reads the files in between when the log rotates several times between polls."""
    write_log(log_path, key, 5, rotate_bytes=1200)
    seen = _collect_follow(log_path, key, appends=40, rotate=1200, interval=0.05)
    assert seen == list(range(3, 45))


def test_follow_stops_when_told(log_path: Path, key: bytes) -> None:
    """Follow ends when stop() returns true, even with no new records."""
    write_log(log_path, key, 1)
    calls = iter(range(100))
    got = list(follow(log_path, 5, interval=0.001, stop=lambda: next(calls) >= 3))
    assert [r["seq"] for r in got] == [0]


def test_follow_waits_for_a_log_that_does_not_exist_yet(log_path: Path, key: bytes) -> None:
    """Follow on a directory with only an anchor picks up the live file once it appears."""
    write_log(log_path, key, 2)
    log_path.rename(log_path.with_name("audit.jsonl.1"))
    assert _collect_follow(log_path, key, appends=3, rotate=10**9) == [0, 1, 2, 3, 4]


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"server": "files"}, [1, 3, 5, 7, 9]),
        ({"tool": "write_*"}, [0, 3, 6, 9]),
        ({"decision": "deny"}, [0, 5]),
        ({"decision": "deny", "server": "db"}, [0]),
        ({"rule": "tools.allow"}, list(range(10))),
        ({"principal": "bob"}, []),
        ({"method": "tools/call", "tool": "read_text_file"}, [1, 2, 4, 5, 7, 8]),
        ({"where": {"enforced": "true", "id": "4"}}, [4]),
    ],
)
def test_query_filters(
    log_path: Path, key: bytes, filters: dict[str, Any], expected: list[int]
) -> None:
    """Query keeps the records matching every filter (globs, case-sensitive)."""
    write_log(log_path, key, 10)
    assert [r["seq"] for r in query(log_path, **filters)] == expected


def test_query_time_window(log_path: Path, key: bytes) -> None:
    """Query's since is inclusive and until exclusive, in any offset."""
    records = write_log(log_path, key, 5)
    ts = [r["ts"] for r in records]
    assert [r["seq"] for r in query(log_path, since=ts[2])] == [2, 3, 4]
    assert [r["seq"] for r in query(log_path, until=ts[2])] == [0, 1]
    assert [r["seq"] for r in query(log_path, since=ts[1], until=ts[3])] == [1, 2]
    later = datetime.now(UTC) + timedelta(hours=1)
    assert list(query(log_path, since=later)) == []
    plus_two = (later - timedelta(hours=3)).astimezone().isoformat()
    assert len(list(query(log_path, since=plus_two))) == 5


def test_parse_time_forms() -> None:
    """parse_time accepts Z, offsets, bare dates and naive times (as UTC)."""
    assert parse_time("2026-11-24T19:40:01Z") == "2026-11-24T19:40:01.000000Z"
    assert parse_time("2026-11-24T20:40:01.5+01:00") == "2026-11-24T19:40:01.500000Z"
    assert parse_time("2026-11-24") == "2026-11-24T00:00:00.000000Z"
    assert parse_time("2026-11-24T19:40:01") == "2026-11-24T19:40:01.000000Z"
    with pytest.raises(ValueError, match="Invalid isoformat"):
        parse_time("yesterday")
