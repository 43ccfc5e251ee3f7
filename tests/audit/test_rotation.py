"""Rotation: numbered files, oldest first, and one chain across them."""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path

import pytest

from portcullis._exceptions import AuditError
from portcullis.audit import AuditLog, log_files, rotated_files, verify

from .conftest import lines, sample, write_log


def _all_records(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for f in log_files(path) for line in f.read_bytes().splitlines()]


def test_rotation_numbers_files_from_the_oldest(log_path: Path, key: bytes) -> None:
    """Rotated files are audit.jsonl.1, .2 … with .1 the oldest; the live file is newest."""
    write_log(log_path, key, 30, rotate_bytes=2000)
    rotated = rotated_files(log_path)
    assert [p.name for p in rotated[:3]] == ["audit.jsonl.1", "audit.jsonl.2", "audit.jsonl.3"]
    first = json.loads(lines(rotated[0])[0])
    assert first["seq"] == 0
    assert log_files(log_path)[-1] == log_path


def test_files_stay_under_rotate_bytes(log_path: Path, key: bytes) -> None:
    """No file grows past rotate_bytes (a record larger than that gets a file of its own)."""
    write_log(log_path, key, 30, rotate_bytes=2000)
    for f in log_files(log_path):
        assert f.stat().st_size <= 2000


def test_chain_continues_across_files(log_path: Path, key: bytes) -> None:
    """The first record of each new file has the previous file's last mac as prev."""
    write_log(log_path, key, 30, rotate_bytes=2000)
    files = log_files(log_path)
    assert len(files) > 2
    for older, newer in itertools.pairwise(files):
        last = json.loads(lines(older)[-1])
        first = json.loads(lines(newer)[0])
        assert first["prev"] == last["mac"]
        assert first["seq"] == last["seq"] + 1
    assert [r["seq"] for r in _all_records(log_path)] == list(range(30))


def test_rotated_log_verifies(log_path: Path, key: bytes) -> None:
    """A log spread over several files verifies as one chain."""
    write_log(log_path, key, 30, rotate_bytes=2000)
    report = verify(log_path, key)
    assert report.ok, report
    assert report.records == 30
    assert f"in {len(log_files(log_path))} files" in report.reason


def test_reopen_after_rotation_continues(log_path: Path, key: bytes) -> None:
    """A writer opening a freshly rotated (empty) live file continues the chain."""
    write_log(log_path, key, 5, rotate_bytes=10**6)
    log_path.rename(log_path.with_name("audit.jsonl.1"))
    log_path.write_bytes(b"")
    later = write_log(log_path, key, 2)
    assert later[0]["seq"] == 5
    assert "recovery" not in later[0]
    assert verify(log_path, key).ok


def test_crash_between_rename_and_create_is_harmless(log_path: Path, key: bytes) -> None:
    """If the live file is missing after a rotation's rename, the next writer recreates it."""
    write_log(log_path, key, 5)
    log_path.rename(log_path.with_name("audit.jsonl.1"))
    later = write_log(log_path, key, 2)
    assert later[0]["seq"] == 5
    assert verify(log_path, key).ok


def test_deleted_oldest_file_is_reported(log_path: Path, key: bytes) -> None:
    """Removing the oldest rotated file is reported: the chain no longer starts at seq 0."""
    write_log(log_path, key, 30, rotate_bytes=2000)
    rotated_files(log_path)[0].unlink()
    report = verify(log_path, key)
    assert not report.ok
    assert "starts at seq" in report.reason


def test_deleted_middle_file_is_reported(log_path: Path, key: bytes) -> None:
    """Removing a rotated file from the middle is reported where the chain jumps."""
    write_log(log_path, key, 30, rotate_bytes=2000)
    gone = rotated_files(log_path)[1]
    first_gone = json.loads(lines(gone)[0])["seq"]
    gone.unlink()
    report = verify(log_path, key)
    assert not report.ok
    assert "missing" in report.reason
    assert report.first_bad is not None
    assert report.first_bad > first_gone


def test_rotation_by_another_writer_is_followed(log_path: Path, key: bytes) -> None:
    """A writer whose file another writer rotated away writes to the new live file."""
    with (
        AuditLog(log_path, key, rotate_bytes=1500) as a,
        AuditLog(log_path, key, rotate_bytes=10**9) as b,
    ):
        for i in range(20):
            a.append(sample(i))
            b.append(sample(i))
    assert rotated_files(log_path)
    report = verify(log_path, key)
    assert report.ok, report
    assert report.records == 40


def test_failed_rotation_raises_and_recovers(
    log_path: Path, key: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rotation that cannot rename raises AuditError naming both files; the next append works."""

    def refuse(src: object, dst: object) -> None:
        raise PermissionError(1, "Operation not permitted")

    with AuditLog(log_path, key, rotate_bytes=1500) as log:
        for i in range(3):
            log.append(sample(i))
        assert 1000 < log_path.stat().st_size < 1500  # so the next append rotates
        monkeypatch.setattr(os, "rename", refuse)
        with pytest.raises(AuditError, match=r"rotate .*audit\.jsonl to .*audit\.jsonl\.1"):
            log.append(sample(3))
        monkeypatch.undo()
        log.append(sample(99))
    report = verify(log_path, key)
    assert report.ok, report
