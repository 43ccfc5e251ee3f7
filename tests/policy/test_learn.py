"""Learning from audit records: which calls teach, tool actions, roots, tables and hosts."""

from __future__ import annotations

from typing import Any

import pytest

from portcullis.policy.learn import (
    covering_roots,
    injection_rules,
    learn,
    not_learnable,
    root_refusal,
    tool_action,
    tool_inventory,
)

PROJECT = "/srv/project"


def listing(server: str = "files", tools: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """An observe-mode tools/list result record."""
    return {
        "ts": "2026-11-20T10:00:00.000000Z",
        "server": server,
        "session": "s1",
        "direction": "s2c",
        "method": "tools/list",
        "decision": "allow",
        "rule": "tools.observed",
        "observed": {
            "tools": tools
            if tools is not None
            else [
                {"name": "read_text_file", "annotations": {"readOnlyHint": True}},
                {"name": "list_directory", "annotations": {"readOnlyHint": True}},
                {"name": "write_file", "annotations": {"destructiveHint": True}},
                {"name": "move_file", "annotations": {"readOnlyHint": False}},
            ]
        },
    }


def call(
    rid: int,
    tool: str,
    *,
    paths: list[str] | None = None,
    decision: str = "allow",
    rule: str = "tools.allow",
    server: str = "files",
    ts: str = "2026-11-21T10:00:00.000000Z",
    **extra: Any,
) -> dict[str, Any]:
    """A digest-mode c2s tools/call record with only observed inputs and paths."""
    observed: dict[str, Any] = {}
    if paths:
        observed["inputs"] = {f"/paths/{i}": p for i, p in enumerate(paths)}
        observed["paths"] = paths
    return {
        "ts": ts,
        "server": server,
        "session": "s1",
        "direction": "c2s",
        "method": "tools/call",
        "id": rid,
        "tool": tool,
        "args": "hmac-sha256:" + "0" * 64,
        "decision": decision,
        "rule": rule,
        "observed": observed,
        **extra,
    }


def result(rid: int, tool: str, findings: dict[str, int] | None = None) -> dict[str, Any]:
    """The s2c outcome record of a tools/call."""
    rec: dict[str, Any] = {
        "server": "files",
        "session": "s1",
        "direction": "s2c",
        "method": "tools/call",
        "id": rid,
        "tool": tool,
        "decision": "flag" if findings else "allow",
        "rule": "tools.allow",
    }
    if findings:
        rec["findings"] = findings
    return rec


def test_used_tools_allowed_unused_denied_destructive_confirmed() -> None:
    """Used read tools allow, a used destructive tool confirm, listed unused tools deny."""
    records = [
        listing(),
        call(1, "read_text_file", paths=[f"{PROJECT}/a.txt"]),
        call(2, "write_file", paths=[f"{PROJECT}/b.txt"]),
    ]
    s = learn(records, home="/home/u")["files"]
    assert s.action("read_text_file")[0] == "allow"
    assert s.action("write_file")[0] == "confirm"
    assert s.action("move_file")[0] == "deny"
    assert s.action("list_directory")[0] == "deny"


def test_would_be_denial_does_not_widen_roots() -> None:
    """A traversal recorded as a would-be denial (enforced false) teaches nothing."""
    records = [
        listing(),
        call(1, "read_text_file", paths=[f"{PROJECT}/src/a.py"]),
        call(
            2,
            "read_text_file",
            paths=["/etc/passwd"],
            decision="deny",
            rule="paths.outside-roots",
            enforced=False,
        ),
    ]
    s = learn(records, home="/home/u")["files"]
    assert [r.path for r in s.roots] == [f"{PROJECT}/src"]
    assert s.skipped == {"would-be denial": 1}
    assert s.tools["read_text_file"].learnable == 1


def test_a_call_whose_result_was_flagged_for_injection_does_not_teach() -> None:
    """An injection finding on the result (same session and id) keeps the call from teaching."""
    records = [
        listing(),
        call(1, "read_text_file", paths=[f"{PROJECT}/ok.txt"]),
        result(1, "read_text_file"),
        call(2, "list_directory", paths=["/srv/elsewhere"]),
        result(2, "list_directory", {"injection-instruction": 1}),
    ]
    s = learn(records, home="/home/u")["files"]
    assert [r.path for r in s.roots] == [PROJECT]
    assert s.action("list_directory")[0] == "deny"
    assert s.skipped == {"injection finding": 1}


@pytest.mark.parametrize(
    ("decision", "extra", "learnable"),
    [
        ("allow", {}, True),
        ("confirm", {"approval": {"channel": "tty", "outcome": "approved"}}, True),
        ("confirm", {"enforced": False}, True),  # observe mode with approvals relaxed
        ("confirm", {"approval": {"channel": "tty", "outcome": "pending"}}, False),
        ("deny", {"approval": {"channel": "tty", "outcome": "denied"}}, False),
        ("deny", {"enforced": False}, False),
        ("allow", {"findings": {"unicode-tag-chars": 2}}, False),
    ],
)
def test_which_decisions_teach(decision: str, extra: dict[str, Any], learnable: bool) -> None:
    """Allow, approved confirm and relaxed confirm teach; denials and pending ones do not."""
    rec = call(1, "read_text_file", decision=decision, **extra)
    assert (not_learnable(rec, None) is None) is learnable


def test_a_confirmed_read_tool_stays_confirm() -> None:
    """A tool whose calls needed a person's approval is not loosened to allow."""
    approved = {"approval": {"channel": "tty", "outcome": "approved"}}
    records = [listing(), call(1, "read_text_file", decision="confirm", **approved)]
    assert learn(records, home="/h")["files"].action("read_text_file")[0] == "confirm"


@pytest.mark.parametrize(
    ("name", "annotations", "action"),
    [
        ("read_text_file", {"readOnlyHint": True}, "allow"),
        ("get_settings", {}, "allow"),  # "settings" is not the verb "set"
        ("delete_file", {"readOnlyHint": True}, "confirm"),  # a claim cannot excuse the name
        ("createIssue", {}, "confirm"),
        ("run_shell", {}, "confirm"),
        ("git_push", {}, "confirm"),
        ("fetch", {"destructiveHint": True}, "confirm"),
        ("fetch", {"readOnlyHint": False}, "confirm"),
        ("fetch", {}, "allow"),
    ],
)
def test_tool_action(name: str, annotations: dict[str, Any], action: str) -> None:
    """Names and annotations that say a tool changes things make it confirm."""
    assert tool_action(name, annotations)[0] == action


@pytest.mark.parametrize(
    "path",
    ["/", "/home/u", "/root", "/home/other", "/Users/me", "/home"],
)
def test_root_refusal_refuses_the_file_system_and_homes(path: str) -> None:
    """/, home directories and their ancestors are never roots."""
    assert root_refusal(path, home="/home/u") is not None


def test_root_refusal_refuses_protected_paths() -> None:
    """Protected paths, paths inside them, client configs and ancestors of keep_out are refused."""
    protected = ["/var/state", "/etc/policy.yaml", ".cursor"]
    keep_out = ["/srv/work/state"]
    assert root_refusal("/var/state/x", home="/h", protected=protected) is not None
    assert root_refusal("/srv/p/.cursor", home="/h", protected=protected) is not None
    assert root_refusal("/srv/work", home="/h", keep_out=keep_out) is not None
    assert root_refusal("/srv/work/project", home="/h", keep_out=keep_out) is None


def test_a_file_in_the_home_directory_becomes_its_own_root() -> None:
    """When the covering directory is the home directory, the narrower file is kept instead."""
    roots, refused = covering_roots({"/home/u/notes.txt": 2}, home="/home/u")
    assert [r.path for r in roots] == ["/home/u/notes.txt"]
    assert "home directory" in roots[0].note
    assert refused == []


def test_listing_the_root_directory_is_refused() -> None:
    """A listing of / itself is left out with a reason; it never becomes a root."""
    roots, refused = covering_roots({"/": 1}, home="/home/u", is_dir=lambda p: True)
    assert roots == []
    assert refused == [("/", "it is the whole file system")]


def test_covering_roots_are_the_narrowest_and_merged() -> None:
    """Files give their directory; directories themselves; nested candidates merge."""
    paths = {
        f"{PROJECT}/src/a.py": 3,
        f"{PROJECT}/src/lib/b.py": 1,
        f"{PROJECT}/docs/x.md": 1,
        "/srv/other/c.txt": 1,
    }
    roots, _ = covering_roots(paths, home="/home/u", is_dir=lambda p: None)
    assert [(r.path, r.count) for r in roots] == [
        ("/srv/other", 1),
        (f"{PROJECT}/docs", 1),
        (f"{PROJECT}/src", 4),
    ]
    roots, _ = covering_roots(
        {**paths, PROJECT: 1}, home="/home/u", is_dir=lambda p: p == PROJECT or None
    )
    assert [r.path for r in roots] == ["/srv/other", PROJECT]


def test_sql_tables_and_url_hosts_are_learned() -> None:
    """Tables read and hosts fetched are counted, lower-case, from learnable calls only."""
    records = [
        call(1, "query", observed={"inputs": {"/sql": "select 1"}, "tables": ["Orders", "users"]}),
        call(2, "query", observed={"tables": ["orders"]}),
        call(3, "fetch", observed={"hosts": ["Docs.Python.org"]}),
        call(4, "fetch", decision="deny", enforced=False, observed={"hosts": ["evil.example"]}),
    ]
    s = learn(records, home="/h")["files"]
    assert dict(s.tables) == {"orders": 2, "users": 1}
    assert dict(s.hosts) == {"docs.python.org": 1}


def test_since_and_server_filter_calls() -> None:
    """--since drops older calls (listings still count); --server keeps one server."""
    records = [
        listing(),
        call(1, "read_text_file", paths=["/srv/old/a"], ts="2026-11-01T00:00:00.000000Z"),
        call(2, "read_text_file", paths=["/srv/new/a"], ts="2026-11-22T00:00:00.000000Z"),
        call(3, "fetch", server="web", observed={"hosts": ["a.example"]}),
    ]
    learned = learn(records, since="2026-11-10T00:00:00.000000Z", home="/h")
    assert [r.path for r in learned["files"].roots] == ["/srv/new"]
    assert set(learned["files"].listed) == {
        "read_text_file",
        "list_directory",
        "write_file",
        "move_file",
    }
    assert set(learn(records, server="web", home="/h")) == {"web"}


def test_injection_rules_and_inventory() -> None:
    """Injection and hidden-character rules are recognised; redaction rules are not."""
    assert injection_rules(
        {"aws-access-key": 1, "injection-tag": 1, "unicode-bidi-control": 1}
    ) == [
        "injection-tag",
        "unicode-bidi-control",
    ]
    inventory = tool_inventory([listing(tools=[{"name": "t", "input_schema": {"type": "object"}}])])
    assert inventory["files"]["t"].input_schema == {"type": "object"}
