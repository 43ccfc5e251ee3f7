"""The audit trail a real session leaves, and the ``portcullis audit`` commands that read it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.e2e.conftest import Gateway, everything, fixture_server, text_of

pytestmark = pytest.mark.e2e

DENY_ENV = """\
version: 1
defaults:
  tools:
    default: allow
    deny: [get-env]
"""

DENY_CRASH = """\
version: 1
defaults:
  tools:
    default: allow
    deny: [crash]
"""


def audit_cli(gw: Gateway, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``python -m portcullis audit ARGS`` against the test's state directory."""
    return gw.cli("audit", *args)


def calls(records: list[dict], direction: str) -> list[dict]:  # type: ignore[type-arg]
    return [r for r in records if r.get("method") == "tools/call" and r["direction"] == direction]


@pytest.mark.anyio
async def test_session_leaves_allow_and_deny_records_that_verify(gw: Gateway) -> None:
    """One allowed and one denied call leave allow and deny records; audit verify exits 0."""
    async with gw.client(everything(), DENY_ENV) as client:
        allowed = await client.call_tool("echo", {"message": "secret-argument-value"})
        denied = await client.call_tool("get-env", {})
    assert not allowed.is_error
    assert denied.is_error

    records = gw.audit_records()
    asked = calls(records, "c2s")
    assert [(r["tool"], r["decision"], r["rule"]) for r in asked] == [
        ("echo", "allow", "tools.default"),
        ("get-env", "deny", "tools.deny"),
    ]
    assert 'deny pattern "get-env"' in asked[1]["reason"]
    answered = calls(records, "s2c")
    assert [(r["tool"], r["decision"]) for r in answered] == [("echo", "allow")]
    assert answered[0]["result_bytes"] > 0
    for record in records:
        assert record["era"] == "legacy"
        assert record["server"] == "defaults"
        for field in ("ts", "seq", "prev", "mac", "policy", "session", "principal"):
            assert field in record, (field, record)
    assert [r["seq"] for r in records] == sorted(r["seq"] for r in records)
    assert len({r["session"] for r in records}) == 1
    # Arguments are kept as a keyed digest by default, never in clear.
    assert "secret-argument-value" not in (gw.home / "audit.jsonl").read_text()

    verified = audit_cli(gw, "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr

    denials = audit_cli(gw, "query", "--decision", "deny")
    assert denials.returncode == 0, denials.stderr
    found = [json.loads(line) for line in denials.stdout.splitlines() if line.strip()]
    assert [(r["tool"], r["rule"]) for r in found] == [("get-env", "tools.deny")]


@pytest.mark.anyio
async def test_tampered_record_fails_verify(gw: Gateway) -> None:
    """Editing one decision in the log makes audit verify exit 1 and name the bad record."""
    async with gw.client(everything(), DENY_ENV) as client:
        await client.call_tool("get-env", {})
        await client.call_tool("echo", {"message": "x"})
    log = gw.home / "audit.jsonl"
    lines = log.read_text().splitlines(keepends=True)
    index = next(
        i
        for i, line in enumerate(lines)
        if '"decision": "deny"' in line or '"decision":"deny"' in line
    )
    seq = json.loads(lines[index])["seq"]
    lines[index] = lines[index].replace('"deny"', '"allow"', 1)
    log.write_text("".join(lines))

    verified = audit_cli(gw, "verify")
    assert verified.returncode == 1, verified.stdout + verified.stderr
    assert str(seq) in verified.stdout + verified.stderr


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_records_carry_the_session_era(gw: Gateway, mode: str) -> None:
    """Every record of a session names the era the client speaks."""
    async with gw.client(fixture_server(), DENY_CRASH, mode=mode) as client:
        await client.call_tool("echo", {"text": "hello"})
        refused = await client.call_tool("crash", {"status": 1})
    assert refused.is_error
    records = gw.audit_records()
    assert [r["decision"] for r in calls(records, "c2s")] == ["allow", "deny"]
    assert {r["era"] for r in records} == {mode}


@pytest.mark.anyio
async def test_argument_named_like_modern_meta_does_not_change_era(gw: Gateway) -> None:
    """A legacy session stays legacy when a tool argument is named like the 2026 _meta key."""
    async with gw.client(fixture_server(), DENY_CRASH) as client:
        assert client.protocol_version == "2025-11-25"
        await client.call_tool(
            "echo", {"text": "hi", "io.modelcontextprotocol/protocolVersion": "2026-07-28"}
        )
        refused = await client.call_tool("crash", {"status": 1})
    assert refused.is_error
    records = gw.audit_records()
    assert [(r["tool"], r["era"]) for r in calls(records, "c2s")] == [
        ("echo", "legacy"),
        ("crash", "legacy"),
    ]


def test_unwritable_audit_log_refuses_to_start(gw: Gateway, tmp_path: Path) -> None:
    """An audit log that cannot be written makes run refuse to start, before the server runs."""
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    pid_file = tmp_path / "server.pid"
    policy = DENY_CRASH + f"audit:\n  path: {blocker / 'audit.jsonl'}\n"
    done = gw.run(fixture_server("--pid-file", str(pid_file)), policy)
    assert done.returncode != 0
    assert str(blocker) in done.stderr
    assert not pid_file.exists(), "the server was started although nothing can be audited"


@pytest.mark.anyio
async def test_observe_mode_forwards_and_audits_unenforced(gw: Gateway) -> None:
    """In observe mode a denied call is forwarded, audited as deny with enforced false, and warned."""
    policy = DENY_ENV.replace("  tools:", "  mode: observe\n  tools:")
    async with gw.client(everything(), policy) as client:
        names = {tool.name for tool in (await client.list_tools()).tools}
        result = await client.call_tool("get-env", {})
    assert "get-env" in names
    assert not result.is_error
    assert '"PATH"' in text_of(result)
    asked = calls(gw.audit_records(), "c2s")
    assert [(r["tool"], r["decision"], r["rule"], r.get("enforced")) for r in asked] == [
        ("get-env", "deny", "tools.deny", False)
    ]
    assert "observe mode" in gw.stderr()
