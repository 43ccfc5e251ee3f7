"""Observe mode through ``portcullis run`` in front of the real filesystem server.

A read outside the root is forwarded (the content comes back) and audited as the denial it
would have been; approvals are kept by default, so a confirm tool still waits for a person.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.conftest import Gateway, filesystem, text_of

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]

POLICY = """\
version: 1
approvals: {{channels: [console], timeout_s: 2}}
defaults:
  pin: false
servers:
  files:
    mode: observe
    tools: {{default: allow, confirm: [write_file]}}
    paths: {{roots: [{root}]}}
"""


@pytest.fixture
def tree(gw: Gateway) -> dict[str, Path]:
    """A project root inside a wider directory the server itself may reach."""
    base = gw.tmp / "base"
    root = base / "project"
    outside = base / "outside"
    for d in (root, outside):
        d.mkdir(parents=True)
    (root / "notes.txt").write_text("inside the root\n")
    (outside / "secret.txt").write_text("outside the root\n")
    return {"base": base, "root": root, "outside": outside}


async def test_observe_forwards_and_audits_the_would_be_denial(
    gw: Gateway, tree: dict[str, Path]
) -> None:
    """A read outside the root returns the content; the audit says deny, not enforced."""
    policy = gw.policy(POLICY.format(root=tree["root"]))
    target = tree["root"] / ".." / "outside" / "secret.txt"
    async with gw.client(filesystem(tree["base"]), policy, options=["--server", "files"]) as c:
        listed = await c.list_tools()
        result = await c.call_tool("read_text_file", {"path": str(target)})
    assert not result.is_error, text_of(result)
    assert "outside the root" in text_of(result)
    assert any(t.name == "read_text_file" for t in listed.tools)

    records = gw.audit_records()
    [call] = [r for r in records if r["direction"] == "c2s" and r.get("tool") == "read_text_file"]
    assert call["decision"] == "deny"
    assert call["enforced"] is False
    assert call["rule"].startswith("paths.")
    assert call["args"].startswith("hmac-sha256:")  # digest mode, and still observed:
    assert call["observed"]["inputs"] == {"/path": str(target)}
    assert call["observed"]["paths"] == [str((tree["outside"] / "secret.txt").resolve())]

    observed_lists = [r for r in records if r.get("rule") == "tools.observed"]
    assert observed_lists, "no tools.observed record for the tools/list result"
    tools = {t["name"]: t for t in observed_lists[-1]["observed"]["tools"]}
    assert tools["read_text_file"]["annotations"]["readOnlyHint"] is True
    assert "path" in tools["read_text_file"]["input_schema"]["properties"]

    warning = [line for line in gw.stderr().splitlines() if "observe mode for server" in line]
    assert warning == [
        'portcullis: WARNING: observe mode for server "files": policy decisions are logged, '
        "NOT enforced (relaxed: none; kept: redaction, pins, approvals)"
    ]


async def test_confirm_still_waits_for_a_person(gw: Gateway, tree: dict[str, Path]) -> None:
    """With approvals kept, write_file is asked about; unanswered, it is refused and not run."""
    policy = gw.policy(POLICY.format(root=tree["root"]))
    target = tree["root"] / "new.txt"
    async with gw.client(filesystem(tree["base"]), policy, options=["--server", "files"]) as c:
        await c.list_tools()
        result = await c.call_tool("write_file", {"path": str(target), "content": "x"})
    assert result.is_error
    assert "needs a person's approval" in text_of(result)
    assert not target.exists()
    final = [
        r
        for r in gw.audit_records()
        if r["direction"] == "c2s" and r.get("tool") == "write_file" and "approval" in r
    ][-1]
    assert final["decision"] == "deny"
    assert final["approval"]["outcome"] in ("timeout", "unavailable")
    assert "enforced" not in final
    assert final["observed"]["inputs"] == {"/path": str(target)}
