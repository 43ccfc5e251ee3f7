"""Baselines and suppressions: round trip, matching, expiry and clear errors."""

from __future__ import annotations

import dataclasses
import json
import shutil
import stat
from datetime import date
from pathlib import Path

import pytest

from portcullis.scan.baseline import (
    NOTES_KEY,
    REASONS_KEY,
    Baseline,
    BaselineError,
    Suppression,
    load,
    write,
)
from portcullis.scan.model import ConfigFile, Finding, Rule, ScanResult, Server

SECRET = Rule(
    "plaintext-secret", "Plaintext secret", "critical", ("no-production-credentials",), "h"
)
UNPINNED = Rule("unpinned-package", "Not pinned", "medium", ("vetted-pinned-packages",), "h")


def _result(root: Path) -> ScanResult:
    """Two servers in a project config under ``root`` with three findings."""
    file = root / ".mcp.json"
    servers = [
        Server(
            name=n,
            client="claude-code",
            scope="project",
            file=file,
            pointer=f"/mcpServers/{n}",
            line=line,
            transport="stdio",
            positions={"": line, "/env/TOKEN": line + 2, "/args/1": line + 1},
        )
        for n, line in (("db", 3), ("web", 9))
    ]
    cfg = ConfigFile(file, "claude-code", "project", "json", servers)
    db, web = servers
    return ScanResult(
        files=[cfg],
        findings=[
            Finding.of(SECRET, db, "TOKEN is plaintext", pointer="/env/TOKEN"),
            Finding.of(UNPINNED, db, "db-server not pinned", pointer="/args/1"),
            Finding.of(UNPINNED, web, "web-server not pinned", pointer="/args/1"),
        ],
    )


def _write_json(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_round_trip_suppresses_everything(tmp_path: Path) -> None:
    """write() then load().apply() suppresses every finding, with the reason recorded."""
    path = tmp_path / "baseline.json"
    write(path, _result(tmp_path), "accepted at adoption")
    result = _result(tmp_path)
    load(path).apply(result, today=date(2026, 11, 24))
    assert result.findings == []
    assert len(result.suppressed) == 3
    reasons = result.options[REASONS_KEY]
    assert {v["reason"] for v in reasons.values()} == {"accepted at adoption"}
    assert all(v["source"].startswith(f"{path}:") for v in reasons.values())
    assert result.options[NOTES_KEY] == []


def test_written_file_format_and_mode(tmp_path: Path) -> None:
    """Version 1, relative file paths for files beside the baseline, mode 0600, sorted."""
    path = tmp_path / "baseline.json"
    write(path, _result(tmp_path), "ok")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    data = json.loads(path.read_text())
    assert data["version"] == 1
    entries = data["suppressions"]
    assert [(e["server"], e["rule"]) for e in entries] == [
        ("db", "plaintext-secret"),
        ("db", "unpinned-package"),
        ("web", "unpinned-package"),
    ]
    assert {e["file"] for e in entries} == {".mcp.json"}
    assert all(set(e) == {"fingerprint", "rule", "server", "file", "reason"} for e in entries)


def test_baseline_travels_with_the_repository(tmp_path: Path) -> None:
    """A baseline committed beside the config matches in another checkout path."""
    one = tmp_path / "one"
    one.mkdir()
    write(one / "baseline.json", _result(one), "ok")
    two = tmp_path / "two"
    shutil.copytree(one, two)
    result = _result(two)
    load(two / "baseline.json").apply(result)
    assert result.findings == []


def test_rewrite_keeps_reasons_and_expiry_and_manual_entries(tmp_path: Path) -> None:
    """Rewriting keeps earlier reasons and dates, keeps rule-wide entries, drops fixed ones."""
    path = tmp_path / "baseline.json"
    result = _result(tmp_path)
    write(path, result, "first reason")
    data = json.loads(path.read_text())
    data["suppressions"][0]["reason"] = "edited by hand"
    data["suppressions"][0]["expires"] = "2030-01-01"
    data["suppressions"].append({"rule": "not-wrapped", "reason": "wrapped elsewhere"})
    path.write_text(json.dumps(data))
    fixed = _result(tmp_path)
    del fixed.findings[2]  # web was pinned
    write(path, fixed, "second reason")
    entries = json.loads(path.read_text())["suppressions"]
    assert entries[0] == {"rule": "not-wrapped", "reason": "wrapped elsewhere"}
    assert entries[1]["reason"] == "edited by hand"
    assert entries[1]["expires"] == "2030-01-01"
    assert entries[2]["reason"] == "first reason"
    assert len(entries) == 3


def test_expired_entry_brings_the_finding_back_with_a_note(tmp_path: Path) -> None:
    """An expired suppression stops matching the day after and leaves a warning note."""
    path = tmp_path / "baseline.json"
    write(path, _result(tmp_path), "temporary")
    data = json.loads(path.read_text())
    for e in data["suppressions"]:
        e["expires"] = "2026-11-01"
    path.write_text(json.dumps(data, indent=2))
    on_the_day = _result(tmp_path)
    load(path).apply(on_the_day, today=date(2026, 11, 1))
    assert on_the_day.findings == []
    after = _result(tmp_path)
    load(path).apply(after, today=date(2026, 11, 2))
    assert len(after.findings) == 3
    assert after.suppressed == []
    notes = after.options[NOTES_KEY]
    assert len(notes) == 3
    assert "expired on 2026-11-01" in notes[0]
    assert notes[0].startswith(f"{path}:")
    assert "(reason was: temporary)" in notes[0]


def test_rule_wide_suppression_narrowed_by_server(tmp_path: Path) -> None:
    """An entry without a fingerprint matches its rule, narrowed by server and file."""
    result = _result(tmp_path)
    Baseline(
        path=tmp_path / "b.json",
        suppressions=[
            Suppression(
                reason="pinned by lockfile", rule="unpinned-package", server="web", file=".mcp.json"
            )
        ],
    ).apply(result)
    assert [f.server for f in result.suppressed] == ["web"]
    assert len(result.findings) == 2
    other = _result(tmp_path)
    Baseline(
        suppressions=[Suppression(reason="x", rule="unpinned-package", file="/elsewhere")]
    ).apply(other)
    assert other.suppressed == []


def test_unused_entries_are_noted(tmp_path: Path) -> None:
    """Entries that match nothing are reported so the baseline can shrink."""
    path = _write_json(
        tmp_path / "b.json",
        json.dumps(
            {
                "version": 1,
                "suppressions": [{"fingerprint": "0" * 32, "rule": "x", "reason": "gone"}],
            }
        ),
    )
    result = _result(tmp_path)
    load(path).apply(result)
    assert len(result.findings) == 3
    assert "1 baseline entry matches no finding" in result.options[NOTES_KEY][0]


def test_bad_json_names_line_and_column(tmp_path: Path) -> None:
    """Broken JSON is an error with file:line:column."""
    path = _write_json(tmp_path / "b.json", '{"version": 1,\n  "suppressions": [\n    {,}\n]}')
    with pytest.raises(BaselineError, match=r"b\.json:3:6: not valid JSON"):
        load(path)


def test_unknown_version(tmp_path: Path) -> None:
    """An unknown version is refused with the version this build reads."""
    path = _write_json(tmp_path / "b.json", '{"version": 2, "suppressions": []}')
    with pytest.raises(
        BaselineError, match="unknown baseline version 2; this Portcullis reads version 1"
    ):
        load(path)


def test_missing_file(tmp_path: Path) -> None:
    """A named baseline that does not exist is an error unless optional."""
    with pytest.raises(BaselineError, match="does not exist"):
        load(tmp_path / "nope.json")
    assert load(tmp_path / "nope.json", required=False).suppressions == []


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ('{"rule": "x", "reason": "r", "expire": "2026-01-01"}', "unknown key 'expire'"),
        ('{"rule": "x"}', r"suppressions\[1\] needs a reason"),
        ('{"reason": "r"}', "needs a fingerprint or a rule"),
        ('{"rule": "x", "reason": "r", "expires": "soon"}', "must be a date such as 2026-12-31"),
        ('{"rule": 5, "reason": "r"}', "rule must be a string"),
        ('"just a string"', "must be an object"),
    ],
)
def test_bad_entries_name_their_line(tmp_path: Path, entry: str, message: str) -> None:
    """Each invalid entry is reported at the line it starts on."""
    text = (
        '{\n "version": 1,\n "suppressions": [\n  {"rule": "ok", "reason": "fine"},\n  '
        + entry
        + "\n ]\n}"
    )
    path = _write_json(tmp_path / "b.json", text)
    with pytest.raises(BaselineError, match=message) as info:
        load(path)
    if entry.startswith("{"):
        assert f"{path}:5:" in str(info.value)


def test_write_refuses_to_overwrite_a_broken_baseline(tmp_path: Path) -> None:
    """A damaged baseline is not silently replaced."""
    path = _write_json(tmp_path / "b.json", "{nope")
    with pytest.raises(BaselineError):
        write(path, _result(tmp_path), "r")
    assert path.read_text() == "{nope"


def test_write_needs_a_reason(tmp_path: Path) -> None:
    """An empty reason is refused."""
    with pytest.raises(BaselineError, match="needs a reason"):
        write(tmp_path / "b.json", _result(tmp_path), "  ")


def test_rewrite_does_not_duplicate_rule_wide_entries(tmp_path: Path) -> None:
    """Findings a hand-written rule-wide entry covers get no fingerprint entry of their own."""
    path = _write_json(
        tmp_path / "b.json",
        json.dumps(
            {"version": 1, "suppressions": [{"rule": "unpinned-package", "reason": "lockfile"}]}
        ),
    )
    write(path, _result(tmp_path), "new")
    entries = json.loads(path.read_text())["suppressions"]
    assert [e.get("rule") for e in entries] == ["unpinned-package", "plaintext-secret"]
    assert entries[1]["reason"] == "new"


def test_an_accepted_rug_pull_does_not_accept_the_next_one() -> None:
    """A baselined definition-changed finding stops matching when the diff is different."""
    from portcullis.scan.model import Finding

    first = Finding(
        rule="definition-changed",
        severity="high",
        message="m",
        fix="f",
        file="/c/mcp.json",
        server="s",
        tool="add",
        evidence="-old\n+new",
    )
    reworded = dataclasses.replace(first, message="other words", line=9)
    second = dataclasses.replace(first, evidence="-new\n+evil")
    assert reworded.fingerprint == first.fingerprint
    assert second.fingerprint != first.fingerprint


def test_a_location_keyed_rule_ignores_its_evidence() -> None:
    """For rules about a place (a root at /), new evidence keeps the same fingerprint."""
    from portcullis.scan.model import Finding

    a = Finding(rule="fs-root-too-broad", severity="high", message="m", fix="f", evidence="/")
    assert a.fingerprint == dataclasses.replace(a, evidence="~").fingerprint
