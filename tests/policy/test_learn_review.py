"""Review regressions for policy learning: hostile names in the YAML, would-be denials, replay."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from portcullis.policy.learn import learn, not_learnable
from portcullis.policy.suggest import render_suggestion, scalar

# YAML line breaks and characters a YAML reader refuses, that JSON strings do not escape.
UNESCAPED = ["a\x85b", "a\x9fb", "a\ufffeb", "a\uffffb", "a\u2028b", "a\x7fb"]


@pytest.mark.parametrize("text", UNESCAPED)
def test_scalars_with_yaml_breaks_and_unprintables_read_back(text: str) -> None:
    """A tool name holding NEL, C1 controls, non-characters or surrogates reads back unchanged."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    assert yaml.load(f"key: {scalar(text)}  # why", Loader=loader) == {"key": text}


def test_lone_surrogate_becomes_a_replacement_character() -> None:
    """A lone surrogate (no YAML form) is written as U+FFFD, so the file still loads."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    text = "key: " + scalar("a\ud800b")
    assert yaml.load(text, Loader=loader) == {"key": "a\ufffdb"}


def test_suggestion_with_hostile_tool_name_is_valid_yaml_and_encodable() -> None:
    """The whole suggested file loads and can be written as UTF-8 whatever the tool name holds."""
    name = "read\x85- evil: {x}\ufffe"
    records: list[dict[str, Any]] = [
        {
            "server": "s\x85x",
            "direction": "s2c",
            "method": "tools/list",
            "observed": {"tools": [{"name": name}]},
        },
        {
            "server": "s\x85x",
            "direction": "c2s",
            "method": "tools/call",
            "id": 1,
            "tool": name,
            "decision": "allow",
            "observed": {"inputs": {"/p\x85": "v\ud800"}, "paths": ["/srv/p/a\ud800"]},
        },
    ]
    text = render_suggestion(learn(records), log="audit.jsonl")
    text.encode("utf-8")
    loaded = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    assert list(loaded["servers"]) == ["s\x85x"]
    assert loaded["servers"]["s\x85x"]["tools"]["allow"] == [name]


def test_approved_confirm_with_a_would_be_argument_denial_does_not_teach() -> None:
    """A confirm call whose decisive rule is an argument guard's denial never teaches."""
    call = {
        "decision": "confirm",
        "rule": "paths.outside-roots",
        "approval": {"outcome": "approved"},
    }
    assert not_learnable(call, None) == "would-be denial"


def test_rebuilt_call_missing_an_argument_the_candidate_guards_is_not_replayable(
    tmp_path: Any,
) -> None:
    """Inputs recorded without an SQL guard cannot show the SQL: not replayable, never allowed."""
    from portcullis.policy.compiled import CompiledPolicy, Rules, ServerPolicy, SqlSettings
    from portcullis.policy.replay import recorded_calls, replay

    schema = {"type": "object", "properties": {"sql": {"type": "string"}}}
    records: list[dict[str, Any]] = [
        {
            "server": "db",
            "direction": "s2c",
            "method": "tools/list",
            "observed": {"tools": [{"name": "query", "input_schema": schema}]},
        },
        {
            "server": "db",
            "direction": "c2s",
            "method": "tools/call",
            "id": 1,
            "tool": "query",
            "args": "hmac-sha256:00",
            "decision": "allow",
            "rule": "tools.allow",
            "observed": {},
        },
    ]
    candidate = ServerPolicy(
        name="db",
        tools=Rules("deny", allow=("query",)),
        sql=SqlSettings(read_only=True, allow_tables=("orders",)),
    )
    policy = CompiledPolicy(
        digest="x", source=None, defaults=ServerPolicy(name="defaults"), servers={"db": candidate}
    )
    calls, schemas = recorded_calls(records)
    report = replay(calls, policy, schemas=schemas)
    assert report.not_replayable == {"db query": 1}
    assert report.unchanged == 0


@pytest.mark.parametrize(
    "observed",
    [
        {"inputs": {"/path": "/srv/" + "a" * 4096 + "…[+17 chars]"}},
        {"inputs": {"/paths/0": "/srv/a"}, "omitted": {"inputs": 3}},
    ],
)
def test_cut_or_incomplete_observed_inputs_are_not_replayable(
    tmp_path: Any, observed: dict[str, Any]
) -> None:
    """Inputs cut at the cap, or some left out of the record, cannot be replayed as they were."""
    from portcullis.policy.compiled import CompiledPolicy, Rules, ServerPolicy
    from portcullis.policy.replay import recorded_calls, replay

    record = {
        "server": "files",
        "direction": "c2s",
        "method": "tools/call",
        "id": 1,
        "tool": "read",
        "args": "hmac-sha256:00",
        "decision": "allow",
        "rule": "tools.allow",
        "observed": observed,
    }
    server = ServerPolicy(name="files", roots=("/srv",), tools=Rules("deny", allow=("read",)))
    policy = CompiledPolicy(
        digest="x", source=None, defaults=ServerPolicy(name="defaults"), servers={"files": server}
    )
    calls, _ = recorded_calls([record])
    report = replay(calls, policy)
    assert report.not_replayable == {"files read": 1}


@pytest.mark.parametrize("parent", ["/home", "/Users"])
def test_parent_of_home_directories_is_never_a_root(parent: str) -> None:
    """Files right under /home never make /home a root, even when $HOME is elsewhere (/root)."""
    from portcullis.policy.learn import covering_roots, root_refusal

    assert root_refusal(parent, home="/root") == "it holds the home directories"
    roots, _ = covering_roots(
        {f"{parent}/x": 1, f"{parent}/y": 1}, home="/root", is_dir=lambda p: False
    )
    assert all(r.path != parent for r in roots)


def test_malformed_findings_never_teach() -> None:
    """Findings that are not a mapping of counts (an odd or tampered log) make a call unlearnable."""
    call = {"decision": "allow", "rule": "tools.allow", "findings": ["injection-instruction"]}
    assert not_learnable(call, None) == "injection finding"
    assert not_learnable({"decision": "allow"}, {"findings": "injection"}) == "injection finding"


def test_leading_double_slash_is_normalized_in_roots() -> None:
    """A path written //x (POSIX keeps the double slash) gives the root /x, never //."""
    from portcullis.policy.learn import covering_roots

    roots, _ = covering_roots({"//srv/p/a": 1}, home="/root", is_dir=lambda p: False)
    assert [r.path for r in roots] == ["/srv/p"]


def test_table_names_with_glob_characters_do_not_become_wildcards() -> None:
    """A table read as "*" (a quoted identifier) is allowed as itself, never as every table."""
    from portcullis.detect.sql import SqlGuard

    records: list[dict[str, Any]] = [
        {
            "server": "db",
            "direction": "c2s",
            "method": "tools/call",
            "id": 1,
            "tool": "query",
            "decision": "allow",
            "rule": "tools.allow",
            "observed": {"inputs": {"/sql": 'SELECT * FROM "*"'}, "tables": ["*", "p?.t[x]"]},
        }
    ]
    loaded = yaml.safe_load(render_suggestion(learn(records), log="audit.jsonl"))
    allowed = loaded["servers"]["db"]["sql"]["allow_tables"]
    guard = SqlGuard("postgres", allow_tables=allowed)
    assert guard.check("SELECT * FROM secrets", argument="sql").decision == "deny"
    assert guard.check('SELECT * FROM "*"', argument="sql").decision == "allow"
    assert guard.check('SELECT * FROM "p?"."t[x]"', argument="sql").decision == "allow"
