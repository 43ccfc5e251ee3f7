"""The overview: each server's policy, sandbox, pins, today's traffic and the last scan."""

from __future__ import annotations

import json
import os
from pathlib import Path

from portcullis.console.overview import last_scan, overview, sandbox_state
from portcullis.pins import PinStore, launch_id
from portcullis.policy.load import load_policy
from tests.console.conftest import Console, start_console, stop_console, write_log

POLICY = """\
version: 1
servers:
  files:
    command: npx
    args: [-y, "@modelcontextprotocol/server-filesystem", /srv]
    paths: {roots: [/srv]}
    tools: {default: allow, deny: [delete_file], confirm: [write_file]}
  db:
    command: db-server
    mode: observe
    tools: {default: allow}
"""


def test_overview_per_server(home: Path) -> None:
    """Mode, rules, roots, pins, calls and denials today are counted per server."""
    policy_file = home / "policy.yaml"
    policy_file.write_text(POLICY)
    policy = load_policy(policy_file, use_cache=False)
    store = PinStore(home / "pins")
    launch = launch_id("files", "npx", ["-y", "x"])
    store.record("files", launch, "tools", {"a": {"name": "a"}, "b": {"name": "b"}})
    store.record(
        "files", launch, "tools", {"a": {"name": "a", "description": "new"}, "b": {"name": "b"}}
    )
    log = write_log(
        home,
        [
            {"server": "files", "method": "tools/call", "decision": "allow", "direction": "c2s"},
            {"server": "files", "method": "tools/call", "decision": "deny", "direction": "c2s"},
            {"server": "files", "method": "tools/call", "decision": "allow", "direction": "s2c"},
            {"server": "db", "method": "tools/call", "decision": "allow", "direction": "c2s"},
        ],
    )
    view = overview(policy, state=home, log=log, sandbox_why_not=None)
    servers = {s.name: s for s in view.servers}
    files, db = servers["files"], servers["db"]
    facts = dict(files.facts)
    assert facts["Mode"] == "enforce" and dict(db.facts)["Mode"] == "observe"
    assert "deny: delete_file" in facts["Tools"] and "confirm: write_file" in facts["Tools"]
    assert facts["Roots"] == "/srv"
    assert (files.pinned, files.pending) == (2, 1)
    assert (files.calls_today, files.denials_today) == (2, 1)
    assert (db.calls_today, db.denials_today) == (1, 0)
    assert view.scan is None


def test_sandbox_states(home: Path) -> None:
    """Off without a sandbox block; on; required but unavailable says so."""
    policy_file = home / "p.yaml"
    policy_file.write_text(
        "version: 1\nservers:\n  s:\n    command: x\n    tools: {default: allow}\n"
        "    sandbox: {required: true}\n"
    )
    server = load_policy(policy_file, use_cache=False).servers["s"]
    assert sandbox_state(server, None).startswith("on (")
    assert "REQUIRED but unavailable: no bwrap" in sandbox_state(server, "no bwrap")


def save_scan(home: Path, report: dict[str, object]) -> None:
    scan = home / "scan"
    scan.mkdir(mode=0o700, exist_ok=True)
    (scan / "last.json").write_text(json.dumps(report))
    os.chmod(scan / "last.json", 0o600)


def test_last_scan(home: Path) -> None:
    """The kept report's totals and findings; a damaged one is reported, not hidden."""
    assert last_scan(home) is None
    save_scan(
        home,
        {
            "started": "2026-11-25T01:00:00Z",
            "summary": {"findings": 2, "severity": {"high": 1, "low": 1}},
            "findings": [
                {"severity": "high", "rule": "PC-1", "server": "files", "title": "<b>x</b>"},
                {"severity": "low", "rule": "PC-2", "server": "db", "message": "m"},
            ],
        },
    )
    scan = last_scan(home)
    assert scan is not None and scan.total == 2
    assert ("high", 1) in scan.severities
    assert scan.findings[0]["rule"] == "PC-1"
    (home / "scan" / "last.json").write_text("{broken")
    damaged = last_scan(home)
    assert damaged is not None and "damaged" in damaged.error


def test_page(home: Path) -> None:
    """Sections named "Server NAME", scan findings escaped, the no-scan text."""
    policy_file = home / "policy.yaml"
    policy_file.write_text(POLICY)
    console: Console = start_console(
        home, home / "audit.jsonl", policy=load_policy(policy_file, use_cache=False)
    )
    try:
        c = console.login()
        html = c.get("/").text
        assert 'aria-label="Server files"' in html and 'aria-label="Server db"' in html
        assert html.count("No scan has been saved yet") == 2
        save_scan(
            home,
            {
                "started": "2026-11-25T01:00:00Z",
                "summary": {"findings": 1, "severity": {"high": 1}},
                "findings": [
                    {
                        "severity": "high",
                        "rule": "PC-1",
                        "server": "files",
                        "title": "<script>alert(1)</script>",
                    }
                ],
            },
        )
        html = c.get("/").text
        assert "No scan has been saved yet" not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script>alert" not in html
    finally:
        stop_console(console)
