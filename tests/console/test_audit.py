"""The audit page over HTTP: newest first, filters, a record's page, integrity, live rows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from portcullis.console.data import AuditFilters, audit_page, integrity
from tests.console.conftest import XSS, Console, write_log

RECORDS = [
    {
        "server": "files",
        "tool": "read_file",
        "decision": "allow",
        "rule": "tools.allow",
        "principal": "alice",
        "direction": "c2s",
        "method": "tools/call",
    },
    {
        "server": "files",
        "tool": "delete_file",
        "decision": "deny",
        "rule": "tools.deny",
        "principal": "bob",
        "direction": "c2s",
        "method": "tools/call",
        "reason": "delete_file is denied",
    },
    {
        "server": "db",
        "tool": "query",
        "decision": "confirm",
        "rule": "tools.confirm",
        "principal": "alice",
        "direction": "c2s",
        "method": "tools/call",
    },
]


def seqs(html: str) -> list[int]:
    """The record numbers linked from a page, in order."""
    out = []
    for part in html.split('href="/audit/record/')[1:]:
        out.append(int(part.split('"', 1)[0]))
    return out


def test_newest_first_with_links(home: Path, console: Console) -> None:
    """Rows come newest first, each with a "Record SEQ" link to its page."""
    write_log(home, RECORDS)
    html = console.login().get("/audit").text
    assert seqs(html) == [2, 1, 0]
    assert ">Record 2</a>" in html


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("server=files", [1, 0]),
        ("tool=delete_*", [1]),
        ("decision=confirm", [2]),
        ("rule=tools.allow", [0]),
        ("principal=alice", [2, 0]),
        ("server=files&principal=alice", [0]),
        ("since=2000-01-01", [2, 1, 0]),
        ("until=2000-01-01", []),
    ],
)
def test_filters(home: Path, console: Console, query: str, expected: list[int]) -> None:
    """Each filter keeps only the matching records."""
    write_log(home, RECORDS)
    html = console.login().get(f"/audit?{query}").text
    assert seqs(html) == expected
    if not expected:
        assert "No records match." in html


def test_bad_filters_say_why(home: Path, console: Console) -> None:
    """An unknown decision or a bad time is reported, not ignored."""
    write_log(home, RECORDS)
    html = console.login().get("/audit?decision=maybe&since=yesterday").text
    assert "unknown decision" in html and "is not a date" in html
    assert seqs(html) == []


def test_paging(home: Path) -> None:
    """Pages of 50, newest first, with a "more" flag."""
    write_log(home, [{"server": "s", "decision": "allow", "n": i} for i in range(120)])
    first = audit_page(home / "audit.jsonl", AuditFilters(), 1)
    assert [r.seq for r in first.rows][:2] == [119, 118] and len(first.rows) == 50
    assert first.more
    last = audit_page(home / "audit.jsonl", AuditFilters(), 3)
    assert [r.seq for r in last.rows] == list(range(19, -1, -1)) and not last.more


def test_integrity_intact(home: Path, console: Console) -> None:
    """An intact chain shows "Chain verified up to record N" in a status banner."""
    write_log(home, RECORDS)
    html = console.login().get("/audit").text
    assert '<p role="status" class="integrity ok">Chain verified up to record 2' in html


def test_integrity_tampered_names_first_bad_record(home: Path, console: Console) -> None:
    """A record changed after writing breaks the chain at that record."""
    log = write_log(home, RECORDS)
    lines = log.read_text().splitlines()
    rec = json.loads(lines[1])
    rec["decision"] = "allow"
    lines[1] = json.dumps(rec, separators=(",", ":"), sort_keys=True)
    log.write_text("\n".join(lines) + "\n")
    assert integrity(log, home).text.startswith("Chain broken at record 1: ")
    html = console.login().get("/audit").text
    assert "integrity bad" in html and "Chain broken at record 1:" in html


def test_record_page_is_redacted_and_visible(home: Path, console: Console) -> None:
    """A record's page shows it as JSON, secrets redacted, hidden characters visible."""
    secret = "sk-proj-Ab3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5bC7dE9f"
    write_log(home, [{"server": "files", "args": {"key": secret, "p": "a\u200bb"}}])
    c = console.login()
    html = c.get("/audit/record/0").text
    assert "<h1>Record 0</h1>" in html
    assert secret not in html and "[REDACTED:" in html
    assert "a⟨U+200B⟩b" in html
    assert c.get("/audit/record/7").status_code == 404


def test_hostile_audit_fields_are_inert(home: Path, console: Console) -> None:
    """Markup and hidden characters in audit fields are escaped and made visible."""
    write_log(home, [{"server": XSS[0], "tool": XSS[1], "reason": XSS[2], "rule": XSS[3]}])
    c = console.login()
    for path in ("/audit", "/audit/record/0"):
        html = c.get(path).text
        assert "<script>alert" not in html and "<img" not in html
        assert "&lt;script&gt;" in html
        assert "\u202e" not in html and "\u200b" not in html
        assert "⟨U+202E⟩" in html


def test_live_rows_arrive(home: Path, console: Console) -> None:
    """/events/audit sends the rows again when a record is written."""
    write_log(home, RECORDS[:1])
    c = console.login()
    with c.stream("GET", "/events/audit?server=files") as r:
        lines = r.iter_lines()
        for line in lines:
            if "Record 0<" in line:
                break
        write_log(home, RECORDS[1:2])
        for line in lines:
            if "Record 1<" in line:
                break
        else:
            pytest.fail("the new record never arrived")
