"""Auto-approval: project servers enabled without asking and auto-approved tools."""

from __future__ import annotations

from typing import Any

import pytest

from portcullis.scan.checks import approval
from portcullis.scan.model import Setting

from ._helpers import FILE, cfile, srv


def _settings(key: str, value: Any) -> list[tuple[str, str, int | None, str | None]]:
    cf = cfile(settings=[Setting(key, value, f"/{key}", 7)])
    return [(f.rule, f.severity, f.line, f.pointer) for f in approval.check_file(cf)]


def test_enable_all_project_servers_is_high() -> None:
    """`enableAllProjectMcpServers:` true is high, on the setting's line, with its pointer."""
    cf = cfile(
        settings=[Setting("enableAllProjectMcpServers", True, "/enableAllProjectMcpServers", 4)]
    )
    out = list(approval.check_file(cf))
    assert [(f.rule, f.severity, f.line) for f in out] == [
        ("auto-approve-project-servers", "high", 4)
    ]
    assert out[0].file == str(FILE)
    assert out[0].pointer == "/enableAllProjectMcpServers"
    assert "enabledMcpjsonServers" in out[0].fix


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("enableAllProjectMcpServers", False),
        ("enableallprojectmcpservers", True),
        ("enabledMcpjsonServers", ["a"]),
        ("approval_policy", "on-request"),
        ("chat.tools.autoApprove", False),
    ],
)
def test_safe_or_misspelled_settings_are_clean(key: str, value: Any) -> None:
    """False values, other keys and wrong-case keys (which the client ignores) are clean."""
    assert _settings(key, value) == []


def test_codex_approval_never_is_high() -> None:
    """Codex approval_policy = "never" is high."""
    assert _settings("approval_policy", "never") == [
        ("auto-approve-tools", "high", 7, "/approval_policy")
    ]


def test_vscode_global_auto_approve_is_high() -> None:
    """VS Code chat.tools.autoApprove true is high."""
    assert _settings("chat.tools.autoApprove", True)[0][:2] == ("auto-approve-tools", "high")


def test_bypass_permissions_is_high() -> None:
    """Claude Code bypassPermissions mode is high."""
    assert _settings("permissions.defaultMode", "bypassPermissions")[0][:2] == (
        "auto-approve-tools",
        "high",
    )


def test_always_allow_read_tools_is_medium() -> None:
    """Cline alwaysAllow with read-only tools is medium, on the key's line."""
    s = srv(
        "c",
        "npx",
        ["x@1.0.0"],
        raw={"alwaysAllow": ["read_file", "list_directory"]},
        client="cline",
    )
    out = list(approval.check(s))
    assert [(f.rule, f.severity, f.line) for f in out] == [("auto-approve-tools", "medium", 60)]


@pytest.mark.parametrize(
    "tools",
    [
        ["read_file", "write_file"],
        ["*"],
        ["execute_command"],
        ["createIssue"],
        ["browser_navigate", "run_terminal_cmd"],
        ["delete-branch"],
    ],
)
def test_always_allow_write_tools_is_high(tools: list[str]) -> None:
    """Write/exec-looking tool names or * raise alwaysAllow to high."""
    s = srv("c", "npx", ["x@1.0.0"], raw={"alwaysAllow": tools}, client="roo")
    assert [(f.rule, f.severity) for f in approval.check(s)] == [("auto-approve-tools", "high")]


def test_cursor_auto_approve_list() -> None:
    """Cursor/Windsurf autoApprove lists are read the same way."""
    s = srv(
        "c",
        "npx",
        ["x@1.0.0"],
        raw={"autoApprove": ["get_settings", "search_docs"]},
        client="cursor",
    )
    assert [(f.rule, f.severity) for f in approval.check(s)] == [("auto-approve-tools", "medium")]


def test_gemini_trust_is_high() -> None:
    """Gemini trust: true skips every confirmation for the server."""
    s = srv("g", "npx", ["x@1.0.0"], raw={"trust": True}, client="gemini")
    out = list(approval.check(s))
    assert [(f.rule, f.severity, f.pointer) for f in out] == [
        ("auto-approve-tools", "high", "/mcpServers/g/trust")
    ]


@pytest.mark.parametrize("raw", [{}, {"alwaysAllow": []}, {"trust": False}, {"disabled": True}])
def test_no_auto_approval_is_clean(raw: dict[str, Any]) -> None:
    """Empty lists and trust: false are clean."""
    assert list(approval.check(srv("c", "npx", ["x@1.0.0"], raw=raw))) == []


def test_codex_profile_approval_never() -> None:
    """Codex profiles.NAME.approval_policy = "never" is caught under its profile key."""
    assert _settings("profiles.fast.approval_policy", "never")[0][:2] == (
        "auto-approve-tools",
        "high",
    )


def test_vscode_per_tool_auto_approve_map() -> None:
    """A VS Code auto-approve map is medium for read tools and high with a writing tool."""
    assert _settings("chat.tools.autoApprove", {"readFile": True})[0][:2] == (
        "auto-approve-tools",
        "medium",
    )
    assert _settings("chat.tools.autoApprove", {"runInTerminal": True, "x": False})[0][:2] == (
        "auto-approve-tools",
        "high",
    )
    assert _settings("chat.tools.autoApprove", {"runInTerminal": False}) == []
