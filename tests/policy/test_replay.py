"""Replaying recorded calls through a candidate policy: what changes, what cannot be replayed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec

from portcullis.policy.compiled import CompiledPolicy, Rules, ServerPolicy, SqlSettings
from portcullis.policy.replay import rebuild_args, recorded_calls, replay


def rec(
    rid: int,
    tool: str,
    *,
    decision: str = "allow",
    rule: str = "tools.allow",
    inputs: dict[str, str] | None = None,
    args: Any = "hmac-sha256:00",
    observed: bool = True,
    **extra: Any,
) -> dict[str, Any]:
    """A c2s tools/call record; ``inputs`` become observed.inputs."""
    r: dict[str, Any] = {
        "ts": "2026-11-21T10:00:00.000000Z",
        "server": "files",
        "session": "s",
        "direction": "c2s",
        "method": "tools/call",
        "id": rid,
        "tool": tool,
        "args": args,
        "decision": decision,
        "rule": rule,
        **extra,
    }
    if observed:
        r["observed"] = {"inputs": inputs or {}}
    return r


def policy(root: Path, **server: Any) -> CompiledPolicy:
    """A compiled policy with one server ``files`` confined to ``root``."""
    base: dict[str, Any] = {
        "name": "files",
        "roots": (str(root),),
        "tools": Rules("deny", allow=("read_text_file", "list_directory"), confirm=("write_file",)),
    }
    base.update(server)
    return CompiledPolicy(
        digest="x", source=None, defaults=ServerPolicy(name="defaults"),
        servers={"files": ServerPolicy(**base)},
    )  # fmt: skip


def test_rebuild_args_from_pointers() -> None:
    """JSON pointers rebuild nested objects and arrays; escaped segments are unescaped."""
    args = rebuild_args({"/path": "/a", "/paths/1": "/c", "/paths/0": "/b", "/x~1y/0/z": "v"})
    assert args == {"path": "/a", "paths": ["/b", "/c"], "x/y": [{"z": "v"}]}


def test_newly_denied_newly_allowed_unchanged(tmp_path: Path) -> None:
    """A tightening denies calls that went through; a loosening allows ones that were denied."""
    inside, outside = str(tmp_path / "a.txt"), "/etc/passwd"
    records = [
        rec(1, "read_text_file", inputs={"/path": inside}),
        rec(2, "read_text_file", inputs={"/path": inside}),
        rec(3, "move_file", inputs={"/source": inside}),  # allowed then, default deny now
        rec(4, "list_directory", decision="deny", rule="tools.deny", enforced=False),
        rec(
            5,
            "read_text_file",
            inputs={"/path": outside},
            decision="deny",
            rule="paths.outside-roots",
            enforced=False,
        ),  # a would-be denial of a path outside
        rec(6, "write_file", inputs={"/path": inside}),  # allowed then, confirm now
    ]
    calls, schemas = recorded_calls(records)
    report = replay(calls, policy(tmp_path), schemas=schemas)
    got = {(g.kind, g.subject, g.rule, g.count) for g in report.groups}
    assert got == {
        ("newly_denied", "move_file", "tools.default", 1),
        ("newly_confirm", "write_file", "tools.confirm", 1),
        ("newly_allowed", "list_directory", "tools.allow", 1),
    }
    assert (report.calls, report.replayed, report.unchanged) == (6, 6, 3)
    assert report.tightened


def test_argument_guards_use_rebuilt_inputs(tmp_path: Path) -> None:
    """A narrowed root denies the recorded path rebuilt from observed.inputs."""
    records = [rec(1, "read_text_file", inputs={"/path": str(tmp_path / "src" / "a.py")})]
    calls, _ = recorded_calls(records)
    report = replay(calls, policy(tmp_path / "docs"))
    assert [(g.kind, g.rule) for g in report.groups] == [("newly_denied", "paths.outside-roots")]
    assert "a.py" in report.groups[0].example


def test_full_arguments_are_used_when_kept(tmp_path: Path) -> None:
    """With audit.arguments full, the record's args are replayed as they were."""
    calls, _ = recorded_calls(
        [rec(1, "read_text_file", args={"path": "/etc/hosts"}, observed=False)]
    )
    report = replay(calls, policy(tmp_path))
    assert report.count("newly_denied") == 1


def test_unreplayable_calls_are_counted(tmp_path: Path) -> None:
    """Neither args nor observed inputs: counted as not replayable unless the tool rule denies."""
    calls, _ = recorded_calls(
        [
            rec(1, "read_text_file", observed=False),
            rec(2, "read_text_file", observed=False),
            rec(3, "delete_file", observed=False),  # denied by name alone
        ]
    )
    report = replay(calls, policy(tmp_path))
    assert report.not_replayable == {"files read_text_file": 2}
    assert report.count("newly_denied") == 1
    assert report.replayed == 1


def test_denials_a_replay_cannot_judge_are_not_comparable(tmp_path: Path) -> None:
    """A call denied by a pin or the audit log is not reported as newly allowed."""
    calls, _ = recorded_calls([rec(1, "read_text_file", decision="deny", rule="pin.withheld")])
    report = replay(calls, policy(tmp_path))
    assert report.not_comparable == {"pin.withheld": 1}
    assert report.groups == []


def test_sql_allow_tables_tightening(tmp_path: Path) -> None:
    """A candidate allow_tables list denies a recorded query on another table."""
    sql = SqlSettings(arguments=("sql",), dialect="sqlite", allow_tables=("orders",))
    tools = Rules("allow")
    records = [
        rec(1, "query", inputs={"/sql": "select * from orders"}),
        rec(2, "query", inputs={"/sql": "select * from users"}),
    ]
    calls, _ = recorded_calls(records)
    report = replay(calls, policy(tmp_path, sql=sql, tools=tools))
    assert [(g.kind, g.rule, g.count) for g in report.groups] == [
        ("newly_denied", "sql.table-not-allowed", 1)
    ]


def test_calls_to_servers_not_in_the_candidate_are_listed(tmp_path: Path) -> None:
    """A server the candidate does not define is reported, not silently skipped."""
    other = {**rec(1, "read_text_file"), "server": "web"}
    calls, _ = recorded_calls([other])
    report = replay(calls, policy(tmp_path))
    assert report.unknown_servers == {"web": 1}
    assert msgspec.json.decode(msgspec.json.encode(report.as_dict()))["calls"] == 1
