"""verify: every kind of damage is found, and the first bad record is named."""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from portcullis._exceptions import AuditError
from portcullis.audit import AuditLog, VerifyReport, verify
from portcullis.audit._anchor import SLOT_BYTES

from .conftest import lines, sample, set_lines, write_log


def _anchor(path: Path) -> Path:
    return path.with_name(path.name + ".anchor")


def _edit(line: bytes, **changes: object) -> bytes:
    rec = json.loads(line)
    rec.update(changes)
    return msgspec.json.encode(rec, order="sorted") + b"\n"


def test_clean_log_verifies(log_path: Path, key: bytes) -> None:
    """An untouched log verifies, counting every record."""
    write_log(log_path, key, 20)
    report = verify(log_path, key)
    assert report == VerifyReport(ok=True, records=20, reason=report.reason)
    assert "seq 0..19" in report.reason
    assert str(report).startswith("audit log intact")


def test_empty_log_verifies(log_path: Path, key: bytes) -> None:
    """A log opened but never written verifies with zero records."""
    AuditLog(log_path, key).close()
    report = verify(log_path, key)
    assert report.ok
    assert report.records == 0


def test_changed_field_is_named(log_path: Path, key: bytes) -> None:
    """Changing one field of one record breaks that record's mac."""
    write_log(log_path, key, 10)
    raw = lines(log_path)
    raw[6] = raw[6].replace(b'"decision":"allow"', b'"decision":"deny"')
    set_lines(log_path, raw)
    report = verify(log_path, key)
    assert not report.ok
    assert (report.first_bad, report.line, report.records) == (6, 7, 6)
    assert report.file == str(log_path)
    assert "mac does not match" in report.reason


def test_a_record_nested_too_deeply_is_named_not_a_crash(log_path: Path, key: bytes) -> None:
    """A tampered line nested past the decoder's depth is a bad record, not a RecursionError."""
    write_log(log_path, key, 5)
    raw = lines(log_path)
    raw[2] = b'{"x":' + b"[" * 200_000 + b"]" * 200_000 + b"}"
    set_lines(log_path, raw)
    report = verify(log_path, key)
    assert not report.ok and report.line == 3


def test_deleted_middle_record_is_named(log_path: Path, key: bytes) -> None:
    """Removing a record from the middle is reported at the record after the gap."""
    write_log(log_path, key, 10)
    raw = lines(log_path)
    del raw[4]
    set_lines(log_path, raw)
    report = verify(log_path, key)
    assert not report.ok
    assert (report.first_bad, report.line) == (5, 5)
    assert "record 4 is missing" in report.reason


def test_reordered_records_are_named(log_path: Path, key: bytes) -> None:
    """Swapping two records is reported at the first one out of place."""
    write_log(log_path, key, 10)
    raw = lines(log_path)
    raw[3], raw[4] = raw[4], raw[3]
    set_lines(log_path, raw)
    report = verify(log_path, key)
    assert not report.ok
    assert (report.first_bad, report.line) == (4, 4)
    assert "out of order" in report.reason


def test_truncated_tail_is_caught_by_the_anchor(log_path: Path, key: bytes) -> None:
    """Removing the last records leaves a valid chain that the anchor shows is short."""
    write_log(log_path, key, 10)
    set_lines(log_path, lines(log_path)[:7])
    report = verify(log_path, key)
    assert not report.ok
    assert report.first_bad == 7
    assert report.line is None
    assert "anchor records seq 9" in report.reason
    assert "last 3 records were removed" in report.reason


def test_emptied_log_is_caught_by_the_anchor(log_path: Path, key: bytes) -> None:
    """Emptying the whole log is reported as a truncation from seq 0."""
    write_log(log_path, key, 3)
    set_lines(log_path, [])
    report = verify(log_path, key)
    assert not report.ok
    assert report.first_bad == 0


def test_deleted_log_with_anchor_left_is_caught(log_path: Path, key: bytes) -> None:
    """Deleting the log but not its anchor is reported as a truncation, not a missing log."""
    write_log(log_path, key, 3)
    log_path.unlink()
    report = verify(log_path, key)
    assert not report.ok
    assert "truncated" in report.reason


def test_torn_last_line_is_named(log_path: Path, key: bytes) -> None:
    """A last line cut short by a crash is reported as torn at that line."""
    write_log(log_path, key, 5)
    raw = lines(log_path)
    set_lines(log_path, [*raw, raw[0][:40]])
    report = verify(log_path, key)
    assert not report.ok
    assert (report.first_bad, report.line) == (5, 6)
    assert "torn" in report.reason


def test_wrong_key_is_reported_at_the_first_record(log_path: Path, key: bytes) -> None:
    """Verifying with another key fails at seq 0 and suggests the key is wrong."""
    write_log(log_path, key, 5)
    report = verify(log_path, bytes(32))
    assert not report.ok
    assert report.first_bad == 0
    assert "right key" in report.reason


def test_forged_record_with_plain_sha256_is_named(log_path: Path, key: bytes) -> None:
    """A record changed and re-sealed with a plain (unkeyed) sha256 fails its mac."""
    write_log(log_path, key, 6)
    raw = lines(log_path)
    rec = json.loads(raw[2])
    rec["decision"] = "allow"
    rec["tool"] = "delete_everything"
    del rec["mac"]
    rec["mac"] = hashlib.sha256(msgspec.json.encode(rec, order="sorted")).hexdigest()
    raw[2] = msgspec.json.encode(rec, order="sorted") + b"\n"
    set_lines(log_path, raw)
    report = verify(log_path, key)
    assert not report.ok
    assert (report.first_bad, report.line) == (2, 3)


def test_duplicate_key_smuggling_is_named(log_path: Path, key: bytes) -> None:
    """A duplicate key that a parser taking the first value would show is caught."""
    write_log(log_path, key, 3)
    raw = lines(log_path)
    raw[1] = b'{"decision":"allow",' + raw[1][1:]
    set_lines(log_path, raw)
    report = verify(log_path, key)
    assert not report.ok
    assert report.first_bad == 1
    assert "canonical" in report.reason


def test_inserted_copy_of_a_record_is_named(log_path: Path, key: bytes) -> None:
    """Replaying a genuine record a second time is reported where the copy sits."""
    write_log(log_path, key, 5)
    raw = lines(log_path)
    raw.insert(3, raw[1])
    set_lines(log_path, raw)
    report = verify(log_path, key)
    assert not report.ok
    assert (report.first_bad, report.line) == (1, 4)
    assert "out of order or duplicated" in report.reason


def test_missing_anchor_is_reported(log_path: Path, key: bytes) -> None:
    """A log without its anchor does not verify: truncation could not be ruled out."""
    write_log(log_path, key, 3)
    _anchor(log_path).unlink()
    report = verify(log_path, key)
    assert not report.ok
    assert "anchor" in report.reason
    assert "missing" in report.reason


def test_edited_anchor_is_reported(log_path: Path, key: bytes) -> None:
    """An anchor whose MAC fails (both slots) does not verify."""
    write_log(log_path, key, 3)
    data = _anchor(log_path).read_bytes()
    _anchor(log_path).write_bytes(data.replace(b'"seq":', b'"seq":1'))
    report = verify(log_path, key)
    assert not report.ok
    assert "does not verify" in report.reason


def test_anchor_from_another_log_is_reported(tmp_path: Path, key: bytes) -> None:
    """Swapping in the anchor of another log with the same key is caught at the genesis."""
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    write_log(a, key, 3)
    write_log(b, key, 3)
    _anchor(a).write_bytes(_anchor(b).read_bytes())
    report = verify(a, key)
    assert not report.ok
    assert report.first_bad == 0
    assert "genesis" in report.reason


def test_torn_anchor_slot_falls_back_to_the_other(log_path: Path, key: bytes) -> None:
    """A torn write to one anchor slot leaves the other, one record behind, which is ok."""
    write_log(log_path, key, 4)
    data = bytearray(_anchor(log_path).read_bytes())
    head_slot = 3 % 2
    data[head_slot * SLOT_BYTES + 20 : head_slot * SLOT_BYTES + 60] = b"\0" * 40
    _anchor(log_path).write_bytes(bytes(data))
    report = verify(log_path, key)
    assert report.ok, report
    assert "1 record(s) behind" in report.reason


def test_truncation_survives_a_later_append(log_path: Path, key: bytes) -> None:
    """A writer that reopens a truncated log keeps the gap, so verify still reports it."""
    write_log(log_path, key, 10)
    set_lines(log_path, lines(log_path)[:6])
    later = write_log(log_path, key, 2)
    assert later[0]["seq"] == 10
    assert later[0]["recovery"] == {"truncated": {"from_seq": 6, "to_seq": 9}}
    report = verify(log_path, key)
    assert not report.ok
    assert report.first_bad == 10
    assert "6..9" in report.reason


def test_deleted_anchor_survives_a_later_append(log_path: Path, key: bytes) -> None:
    """Deleting the anchor (and truncating) is still reported after the writer carries on."""
    write_log(log_path, key, 10)
    set_lines(log_path, lines(log_path)[:6])
    _anchor(log_path).unlink()
    later = write_log(log_path, key, 2)
    assert later[0]["recovery"] == {"anchor": "missing"}
    report = verify(log_path, key)
    assert not report.ok
    assert report.first_bad == 6
    assert "anchor was missing" in report.reason


def test_torn_line_at_open_starts_a_new_line(log_path: Path, key: bytes) -> None:
    """A writer opening a log that ends in a torn line writes after it, on a new line."""
    write_log(log_path, key, 3)
    raw = lines(log_path)
    set_lines(log_path, [*raw, b'{"seq":3,"pre'])
    later = write_log(log_path, key, 2)
    assert later[0]["seq"] == 3
    assert later[0]["recovery"] == {"torn_bytes": 13}
    assert lines(log_path)[3] == b'{"seq":3,"pre\n'
    report = verify(log_path, key)
    assert not report.ok
    assert (report.first_bad, report.line) == (3, 4)
    assert "the 2 records after it verify" in report.reason


def test_complete_record_missing_only_its_newline_is_kept(log_path: Path, key: bytes) -> None:
    """A last record that lost only its newline is the head, not a torn line."""
    write_log(log_path, key, 3)
    set_lines(log_path, [*lines(log_path)[:-1], lines(log_path)[-1].rstrip(b"\n")])
    assert verify(log_path, key).ok
    later = write_log(log_path, key, 1)
    assert later[0]["seq"] == 3
    assert "recovery" not in later[0]
    assert verify(log_path, key).ok


def test_problem_after_a_torn_line_is_also_reported(log_path: Path, key: bytes) -> None:
    """After a torn line the walk goes on, and a second problem is named too."""
    write_log(log_path, key, 3)
    set_lines(log_path, [*lines(log_path), b"{torn"])
    write_log(log_path, key, 3)
    raw = lines(log_path)
    raw[5] = _edit(raw[5], tool="something_else")
    set_lines(log_path, raw)
    report = verify(log_path, key)
    assert not report.ok
    assert report.line == 4
    assert "interrupted write" in report.reason
    assert "then at" in report.reason
    assert "line 6" in report.reason


def test_non_record_line_is_named(log_path: Path, key: bytes) -> None:
    """A JSON line without seq, prev and mac is reported as not a record."""
    write_log(log_path, key, 3)
    raw = lines(log_path)
    raw.insert(1, b'{"hello":"world"}\n')
    set_lines(log_path, raw)
    report = verify(log_path, key)
    assert (report.ok, report.first_bad, report.line) == (False, 1, 2)
    assert "not an audit record" in report.reason


def test_missing_log_raises(tmp_path: Path, key: bytes) -> None:
    """Verifying a path with no log and no anchor raises AuditError."""
    with pytest.raises(AuditError, match="no audit log"):
        verify(tmp_path / "audit.jsonl", key)


def test_verify_reads_a_copy_without_lock_file(tmp_path: Path, key: bytes) -> None:
    """A copied log (log and anchor only, no lock file) verifies."""
    src = tmp_path / "src" / "audit.jsonl"
    write_log(src, key, 4)
    dst = tmp_path / "copy"
    dst.mkdir()
    for name in ("audit.jsonl", "audit.jsonl.anchor"):
        (dst / name).write_bytes((src.parent / name).read_bytes())
    assert verify(dst / "audit.jsonl", key).ok


def test_report_str_names_file_line_and_seq(log_path: Path, key: bytes) -> None:
    """str(report) of a broken log names the seq, the file and the line."""
    write_log(log_path, key, 3)
    raw = lines(log_path)
    raw[1] = _edit(raw[1], tool="x")
    set_lines(log_path, raw)
    text = str(verify(log_path, key))
    assert "seq 1" in text
    assert f"{log_path} line 2" in text


def test_sample_helper_covers_contract_fields() -> None:
    """The sample record used by these tests has the contract's content fields."""
    assert {"server", "tool", "decision", "rule", "principal", "method"} <= set(sample(0))


def test_directory_in_place_of_the_log_raises(tmp_path: Path, key: bytes) -> None:
    """Verifying a path that is a directory raises AuditError instead of reading it."""
    (tmp_path / "audit.jsonl").mkdir()
    with pytest.raises(AuditError, match="not a regular file"):
        verify(tmp_path / "audit.jsonl", key)


@settings(max_examples=150, deadline=None)
@given(position=st.integers(min_value=0), delta=st.integers(min_value=1, max_value=255))
def test_any_changed_byte_is_detected(position: int, delta: int) -> None:
    """Changing any single byte of the log makes verify fail."""
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "audit.jsonl"
        write_log(path, bytes(range(32)), 4)
        data = bytearray(path.read_bytes())
        index = position % len(data)
        data[index] = (data[index] + delta) % 256
        set_lines(path, [bytes(data)])
        assert not verify(path, bytes(range(32))).ok
