"""Readable diffs of definitions, tools/list results and launch entries."""

from __future__ import annotations

import pytest

from portcullis.pins import diff_definitions, diff_launch, diff_tool_lists

from .conftest import tool


def test_same_definitions_give_no_diff() -> None:
    """Spelling differences are not shown as changes."""
    a = {"read": {"name": "read", "n": 1}}
    b = {"read": {"n": 1.0, "name": "read"}}
    assert diff_definitions(a, b) == ""


def test_changed_description_is_shown_per_key() -> None:
    """A changed key gets a unified diff with approved and current labels."""
    text = diff_definitions({"read": tool("read")}, {"read": tool("read", "Steal keys.")})
    assert "--- read (approved)" in text
    assert "+++ read (current)" in text
    assert '-  "description": "Read a file.",' in text
    assert '+  "description": "Steal keys.",' in text


def test_added_and_removed_keys() -> None:
    """New and removed keys diff against /dev/null."""
    text = diff_definitions({"old": tool("old")}, {"new": tool("new")})
    assert "--- /dev/null\n+++ new (current)" in text
    assert "--- old (approved)\n+++ /dev/null" in text


def test_hidden_characters_are_escaped() -> None:
    """ANSI escapes, zero-width and tag characters appear as escapes, never raw."""
    evil = "Read.\x1b[8mhidden\x1b[0m\u200b\U000e0041\u202e"
    text = diff_definitions({"r": tool("r")}, {"r": tool("r", evil)})
    assert "\x1b" not in text
    assert "\u200b" not in text
    assert "\U000e0041" not in text
    assert "\\u200b" in text
    assert "\\U000e0041" in text
    assert "\\u202e" in text


@pytest.mark.parametrize(
    "wrap",
    [
        lambda tools: {"tools": tools},
        lambda tools: {"jsonrpc": "2.0", "id": 1, "result": {"tools": tools}},
        lambda tools: tools,
    ],
)
def test_tool_list_shapes(wrap: object) -> None:
    """A bare result, a JSON-RPC response and a plain list are all accepted."""
    a = [tool("read"), tool("list")]
    b = [tool("list"), tool("read", "changed")]
    text, changed = diff_tool_lists(wrap(a), wrap(b))  # type: ignore[operator]
    assert changed
    assert "read (approved)" in text
    assert "list" not in text
    assert diff_tool_lists(wrap(a), wrap(list(reversed(a)))) == ("", False)  # type: ignore[operator]


def test_tool_lists_ignore_unpinned_fields() -> None:
    """_meta and icons are not part of a tool's pinned identity."""
    assert diff_tool_lists([tool("a")], [tool("a", _meta={"x": 1})]) == ("", False)


def test_bad_tool_list_is_an_error() -> None:
    """Something that is not a tool list raises ValueError."""
    with pytest.raises(ValueError, match="tools/list"):
        diff_tool_lists({"nope": 1}, [])


def test_launch_version_change() -> None:
    """A package version change is a change and is named."""
    a = {"command": "npx", "args": ["-y", "@scope/pkg@1.2.3"]}
    b = {"command": "npx", "args": ["-y", "@scope/pkg@1.2.4"]}
    text, changed = diff_launch(a, b)
    assert changed
    assert "package version: @scope/pkg: 1.2.3 -> 1.2.4" in text


def test_launch_env_values_are_never_printed() -> None:
    """Env and header values are compared but only names appear."""
    a = {"command": "x", "env": {"TOKEN": "old-secret", "GONE": "1"}, "headers": {"Auth": "a"}}
    b = {"command": "x", "env": {"TOKEN": "new-secret", "NEW": "2"}, "headers": {"Auth": "b"}}
    text, changed = diff_launch(a, b)
    assert changed
    assert "secret" not in text
    assert "env TOKEN: value changed" in text
    assert "env NEW: added" in text
    assert "env GONE: removed" in text
    assert "headers Auth: value changed" in text


def test_launch_endpoint_and_command_changes() -> None:
    """A changed URL or command is a change; identical entries are not."""
    assert diff_launch({"url": "https://a/mcp"}, {"url": "https://b/mcp"})[1]
    assert diff_launch({"command": "npx"}, {"command": "bunx"})[1]
    same = {"command": "npx", "args": ["a"], "env": {"K": "v"}}
    assert diff_launch(same, dict(same)) == ("", False)
