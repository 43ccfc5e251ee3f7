"""Rendering the suggested policy: safe scalars, a comment on every line, kept keys, the diff."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from portcullis.policy.compiled import CompiledPolicy, Rules, ServerPolicy
from portcullis.policy.learn import learn
from portcullis.policy.suggest import diff_policy, render_suggestion, scalar, suggested_servers

HOSTILE = [
    "yes",
    "off",
    "1.5",
    "0x1f",
    "@scope/pkg",
    "-y",
    "a: b",
    "x # y",
    "line\nbreak",
    "~",
    "null",
    "[x]",
    "{a}",
    "*",
    "é/ü",
]


@pytest.mark.parametrize("text", HOSTILE)
def test_scalars_read_back_as_the_same_string(text: str) -> None:
    """Whatever a tool name or path holds, the YAML reads back as that string."""
    assert yaml.safe_load(f"key: {scalar(text)}  # why") == {"key": text}


def records(tool: str) -> list[dict[str, Any]]:
    """A listing and one call of ``tool`` under /srv/p."""
    return [
        {
            "server": "files",
            "direction": "s2c",
            "method": "tools/list",
            "observed": {"tools": [{"name": tool}, {"name": "drop_table"}]},
        },
        {
            "server": "files",
            "direction": "c2s",
            "method": "tools/call",
            "id": 1,
            "tool": tool,
            "decision": "allow",
            "observed": {
                "inputs": {"/path": "/srv/p/a\n# injected: line"},
                "paths": ["/srv/p/a"],
            },
        },
    ]


def test_hostile_names_and_examples_cannot_change_the_file() -> None:
    """A glob-like tool name is escaped; an example with a newline stays inside its comment."""
    text = render_suggestion(learn(records("read*"), home="/h"), log="audit.jsonl")
    assert all("#" in line for line in text.splitlines())
    entry = yaml.safe_load(text)["servers"]["files"]
    assert entry["tools"]["allow"] == ["read[*]"]
    assert entry["tools"]["deny"] == ["drop_table"]
    assert "injected" not in yaml.safe_load(text)  # no key smuggled in


def test_kept_keys_and_other_servers_are_written_back() -> None:
    """Top-level keys and servers not in the log come back unchanged, commented."""
    current = {
        "version": 1,
        "audit": {"arguments": "full", "rotate_bytes": 1000},
        "servers": {
            "files": {"command": "srv", "args": ["--root", "/srv/p"], "redact": ["secrets"]},
            "db": {"tools": {"default": "allow"}, "sql": {"read_only": True, "arguments": ["q"]}},
        },
    }
    text = render_suggestion(
        learn(records("read_file"), home="/h"), log="l", current=current, current_path="p.yaml"
    )
    data = yaml.safe_load(text)
    assert data["audit"] == current["audit"]
    assert data["servers"]["db"] == current["servers"]["db"]
    files = data["servers"]["files"]
    assert (files["command"], files["args"], files["redact"]) == (
        "srv",
        ["--root", "/srv/p"],
        ["secrets"],
    )
    assert all("#" in line for line in text.splitlines())


def test_diff_against_the_current_policy() -> None:
    """The diff names mode, default and list changes, and new servers."""
    learned = learn(records("read_file"), home="/h")
    current = CompiledPolicy(
        digest="d",
        source="p.yaml",
        defaults=ServerPolicy(name="defaults"),
        servers={
            "files": ServerPolicy(
                name="files", mode="observe", tools=Rules("allow", deny=("x",)), roots=("/srv",)
            )
        },
    )
    lines = diff_policy(suggested_servers(learned), current)
    assert "servers.files.mode: observe -> enforce" in lines
    assert "servers.files.tools.default: allow -> deny" in lines
    assert "servers.files.tools.deny: +drop_table -x" in lines
    assert "servers.files.paths.roots: +/srv/p -/srv" in lines
    empty = CompiledPolicy(digest="d", source=None, defaults=ServerPolicy(name="defaults"))
    assert diff_policy(suggested_servers(learned), empty)[0].endswith(
        "new server (not in the current policy)"
    )
