"""AuditLog: the record format, the chain, the anchor, and refusing to run unaudited."""

from __future__ import annotations

import errno
import hashlib
import hmac
import json
import os
import re
import stat
import threading
from pathlib import Path

import msgspec
import pytest

from portcullis._exceptions import AuditError
from portcullis.audit import AuditLog, digest_args, verify
from portcullis.audit import _log as log_module
from portcullis.audit._anchor import SLOT_BYTES
from portcullis.audit._record import format_ts

from .conftest import lines, sample, write_log

TS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")


def _anchor_slots(path: Path) -> list[dict[str, object]]:
    data = (path.parent / (path.name + ".anchor")).read_bytes()
    return [json.loads(data[i : i + SLOT_BYTES]) for i in range(0, len(data), SLOT_BYTES)]


def test_append_adds_chain_fields(log_path: Path, key: bytes) -> None:
    """Each append adds ts, seq, prev and mac, and keeps the caller's fields."""
    records = write_log(log_path, key, 3)
    assert [r["seq"] for r in records] == [0, 1, 2]
    assert records[1]["prev"] == records[0]["mac"]
    assert records[2]["prev"] == records[1]["mac"]
    for r in records:
        assert TS.fullmatch(r["ts"])
        assert re.fullmatch(r"[0-9a-f]{64}", r["mac"])
        assert r["tool"] in {"read_text_file", "write_file"}


def test_mac_is_hmac_of_canonical_record_without_mac(log_path: Path, key: bytes) -> None:
    """The mac is HMAC-SHA256 over the record's canonical JSON (sorted keys, no spaces) minus mac."""
    (record,) = write_log(log_path, key, 1)
    body = dict(record)
    mac = body.pop("mac")
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    assert mac == hmac.new(key, canonical, hashlib.sha256).hexdigest()


def test_each_record_is_one_canonical_line(log_path: Path, key: bytes) -> None:
    """Every record is one line holding exactly the canonical JSON of what append returned."""
    records = write_log(log_path, key, 4)
    raw = lines(log_path)
    assert len(raw) == 4
    for line, record in zip(raw, records, strict=True):
        assert line == msgspec.json.encode(record, order="sorted") + b"\n"


def test_first_prev_is_the_genesis_id_in_the_anchor(log_path: Path, key: bytes) -> None:
    """The first record's prev is a random genesis id, which the anchor also records."""
    (first,) = write_log(log_path, key, 1)
    assert re.fullmatch(r"[0-9a-f]{64}", first["prev"])
    assert {slot["genesis"] for slot in _anchor_slots(log_path)} == {first["prev"]}
    other = log_path.with_name("other.jsonl")
    (first_other,) = write_log(other, key, 1)
    assert first_other["prev"] != first["prev"]


def test_anchor_holds_the_head(log_path: Path, key: bytes) -> None:
    """After each append the anchor names the head's seq, mac and file."""
    records = write_log(log_path, key, 5)
    newest = max(_anchor_slots(log_path), key=lambda s: int(str(s["seq"])))
    assert newest["seq"] == 4
    assert newest["mac"] == records[-1]["mac"]
    assert newest["file"] == "audit.jsonl"


def test_none_values_are_omitted(log_path: Path, key: bytes) -> None:
    """Fields whose value is None are left out of the record."""
    with AuditLog(log_path, key) as log:
        record = log.append({"server": "files", "tool": None, "reason": None})
    assert "tool" not in record
    assert "reason" not in record
    assert json.loads(lines(log_path)[0])["server"] == "files"


def test_caller_record_is_not_modified(log_path: Path, key: bytes) -> None:
    """An append returns a new dict and leaves the caller's dict as it was."""
    content = sample(1)
    before = dict(content)
    with AuditLog(log_path, key) as log:
        out = log.append(content)
    assert content == before
    assert out is not content


@pytest.mark.parametrize("field", ["ts", "seq", "prev", "mac", "recovery"])
def test_chain_fields_cannot_be_supplied(log_path: Path, key: bytes, field: str) -> None:
    """A record that sets a field the log sets itself is refused."""
    with AuditLog(log_path, key) as log, pytest.raises(AuditError, match=field):
        log.append({"server": "files", field: 1})


def test_unencodable_record_raises_audit_error(log_path: Path, key: bytes) -> None:
    """A value that is not JSON (a lone surrogate, an object) raises AuditError."""
    with AuditLog(log_path, key) as log:
        with pytest.raises(AuditError, match="cannot be encoded"):
            log.append({"args": "\ud800"})
        with pytest.raises(AuditError, match="cannot be encoded"):
            log.append({"args": object()})
        log.append({"server": "files"})
    assert verify(log_path, key).ok


def test_files_are_private(tmp_path: Path, key: bytes) -> None:
    """The log, anchor and lock are created 0600 and a missing directory 0700."""
    path = tmp_path / "new" / "dir" / "audit.jsonl"
    write_log(path, key, 1)
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    for name in ("audit.jsonl", "audit.jsonl.anchor", "audit.jsonl.lock"):
        assert stat.S_IMODE(os.stat(path.parent / name).st_mode) == 0o600


def test_existing_log_readable_by_others_is_tightened(log_path: Path, key: bytes) -> None:
    """Opening a log that others can read makes it 0600."""
    log_path.write_bytes(b"")
    log_path.chmod(0o644)
    write_log(log_path, key, 1)
    assert stat.S_IMODE(os.stat(log_path).st_mode) == 0o600


def test_reopen_continues_the_chain(log_path: Path, key: bytes) -> None:
    """A second AuditLog on the same file continues seq and prev from the head."""
    first = write_log(log_path, key, 3)
    second = write_log(log_path, key, 2)
    assert [r["seq"] for r in second] == [3, 4]
    assert second[0]["prev"] == first[-1]["mac"]
    assert verify(log_path, key).ok


def test_symlink_log_is_refused(tmp_path: Path, key: bytes) -> None:
    """A log path that is a symlink raises AuditError naming the path."""
    target = tmp_path / "elsewhere.jsonl"
    target.write_bytes(b"")
    link = tmp_path / "audit.jsonl"
    link.symlink_to(target)
    with pytest.raises(AuditError, match=re.escape(str(link)) + ".*symlink"):
        AuditLog(link, key)


def test_log_replaced_by_symlink_is_refused_on_append(log_path: Path, key: bytes) -> None:
    """A log swapped for a symlink while open is refused at the next append."""
    with AuditLog(log_path, key) as log:
        log.append(sample(0))
        target = log_path.with_name("x")
        log_path.rename(target)
        log_path.symlink_to(target)
        with pytest.raises(AuditError, match="symlink"):
            log.append(sample(1))


def test_uncreatable_directory_raises(tmp_path: Path, key: bytes) -> None:
    """A log whose directory cannot be created raises AuditError naming it."""
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(AuditError, match=re.escape(str(blocker))):
        AuditLog(blocker / "audit.jsonl", key)


def test_directory_as_log_raises(tmp_path: Path, key: bytes) -> None:
    """A log path that is a directory raises AuditError."""
    (tmp_path / "audit.jsonl").mkdir()
    with pytest.raises(AuditError, match=r"audit\.jsonl"):
        AuditLog(tmp_path / "audit.jsonl", key)


def test_disk_full_raises_audit_error(
    log_path: Path, key: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failed write (disk full) raises AuditError naming the log, and the next works."""

    def full(fd: int, data: bytes) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with AuditLog(log_path, key) as log:
        log.append(sample(0))
        monkeypatch.setattr(log_module, "write_all", full)
        with pytest.raises(AuditError, match=re.escape(str(log_path)) + ".*space"):
            log.append(sample(1))
        monkeypatch.undo()
        assert log.append(sample(2))["seq"] == 1
    assert verify(log_path, key).ok


def test_partial_write_is_recovered_on_next_append(
    log_path: Path, key: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write cut short leaves a torn line; the next append starts a new line after it."""

    def half(fd: int, data: bytes) -> None:
        os.write(fd, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with AuditLog(log_path, key) as log:
        log.append(sample(0))
        monkeypatch.setattr(log_module, "write_all", half)
        with pytest.raises(AuditError):
            log.append(sample(1))
        monkeypatch.undo()
        after = log.append(sample(2))
    assert after["seq"] == 1
    assert after["recovery"]["torn_bytes"] > 0
    assert len(lines(log_path)) == 3
    report = verify(log_path, key)
    assert not report.ok
    assert (report.line, report.first_bad) == (2, 1)
    assert "torn" in report.reason
    assert "the record after it verifies" in report.reason


def test_anchor_write_failure_raises(
    log_path: Path, key: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failed anchor update raises AuditError naming the anchor."""

    def broken(fd: int, anchor: object, signer: object) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    with AuditLog(log_path, key) as log:
        monkeypatch.setattr(log_module, "write_anchor", broken)
        with pytest.raises(AuditError, match=r"anchor .*audit\.jsonl\.anchor"):
            log.append(sample(0))


def test_closed_log_refuses_appends(log_path: Path, key: bytes) -> None:
    """An append after close raises AuditError; close twice is harmless."""
    log = AuditLog(log_path, key)
    log.close()
    log.close()
    with pytest.raises(AuditError, match="closed"):
        log.append(sample(0))


def test_invalid_settings_are_refused(log_path: Path) -> None:
    """An empty key or a non-positive rotate_bytes raises AuditError."""
    with pytest.raises(AuditError, match="key"):
        AuditLog(log_path, b"")
    with pytest.raises(AuditError, match="rotate_bytes"):
        AuditLog(log_path, b"k" * 32, rotate_bytes=0)


def test_threads_share_one_log(log_path: Path, key: bytes) -> None:
    """Four threads appending through one AuditLog produce one unbroken chain."""
    with AuditLog(log_path, key) as log:

        def work(n: int) -> None:
            for i in range(100):
                log.append({"server": f"t{n}", "id": i})

        threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    report = verify(log_path, key)
    assert report.ok, report
    assert report.records == 400


def test_format_ts_is_rfc3339_utc_microseconds() -> None:
    """Timestamps are RFC 3339 in UTC with exactly six fraction digits and a Z."""
    assert format_ts(1_795_549_201_123_456_789) == "2026-11-24T19:40:01.123456Z"
    assert format_ts(1_795_549_201_000_000_000) == "2026-11-24T19:40:01.000000Z"
    assert format_ts(0) == "1970-01-01T00:00:00.000000Z"


def test_digest_args_is_keyed_and_canonical(key: bytes) -> None:
    """digest_args is an HMAC of canonical JSON: key order is irrelevant, the key matters."""
    d = digest_args(key, {"path": "/etc/passwd", "n": 1})
    assert re.fullmatch(r"hmac-sha256:[0-9a-f]{64}", d)
    assert d == digest_args(key, {"n": 1, "path": "/etc/passwd"})
    assert d != digest_args(bytes(32), {"path": "/etc/passwd", "n": 1})
    plain = hashlib.sha256(b'{"n":1,"path":"/etc/passwd"}').hexdigest()
    assert plain not in d


def test_digest_args_cannot_mint_a_record_mac(log_path: Path, key: bytes) -> None:
    """Arguments shaped like a record get a digest that is not that record's mac."""
    (record,) = write_log(log_path, key, 1)
    body = {k: v for k, v in record.items() if k != "mac"}
    assert digest_args(key, body) != "hmac-sha256:" + record["mac"]


def test_log_digest_args_matches_function(log_path: Path, key: bytes) -> None:
    """AuditLog.digest_args gives the same digest as digest_args with the same key."""
    with AuditLog(log_path, key) as log:
        assert log.digest_args([1, "a"]) == digest_args(key, [1, "a"])


def test_digest_args_refuses_non_json(key: bytes) -> None:
    """digest_args raises AuditError for a value that is not JSON."""
    with pytest.raises(AuditError):
        digest_args(key, {1: "non-string key"})
