"""Normalising each client's entry format into Server, with real lines."""

from __future__ import annotations

from pathlib import Path

import pytest

from portcullis.scan.entries import Extracted, extract, guess_shape
from portcullis.scan.model import Format
from portcullis.scan.parse import parse

P = Path("/f")


def _extract(text: str, shape: str, fmt: Format = "json", client: str = "cursor") -> Extracted:
    return extract(parse(text, fmt), shape=shape, path=P, client=client, scope="user")


def test_stdio_entry() -> None:
    """command/args/env/cwd and the line of each value."""
    text = (
        '{"mcpServers": {\n'
        '  "fs": {\n'
        '    "command": "npx",\n'
        '    "args": [\n      "-y",\n      "@mcp/fs"\n    ],\n'
        '    "env": {"TOKEN": "t", "PORT": 8080, "ON": true},\n'
        '    "cwd": "/srv",\n'
        '    "alwaysAllow": ["read"]\n'
        "  }\n}}"
    )
    got = _extract(text, "mcpServers")
    (s,) = got.servers
    assert (s.name, s.pointer, s.line, s.transport) == ("fs", "/mcpServers/fs", 2, "stdio")
    assert (s.command, s.args, s.cwd) == ("npx", ["-y", "@mcp/fs"], "/srv")
    assert s.env == {"TOKEN": "t", "PORT": "8080", "ON": "true"}
    assert s.positions["/command"] == 3
    assert s.positions["/args/1"] == 6
    assert s.line_at("/env/TOKEN") == 8
    assert s.line_at("/alwaysAllow") == 10
    assert s.raw["alwaysAllow"] == ["read"]
    assert got.errors == []


@pytest.mark.parametrize(
    ("entry", "transport", "url"),
    [
        ('{"type": "http", "url": "https://a"}', "http", "https://a"),
        ('{"type": "sse", "url": "https://a"}', "sse", "https://a"),
        ('{"transport": "streamable-http", "url": "https://a"}', "http", "https://a"),
        ('{"serverUrl": "https://a"}', "http", "https://a"),
        ('{"httpUrl": "https://a"}', "http", "https://a"),
        ('{"url": "https://a"}', "http", "https://a"),
        ('{"command": "x", "type": "stdio"}', "stdio", None),
    ],
)
def test_remote_transports(entry: str, transport: str, url: str | None) -> None:
    """Transport from type/transport keys, else from which URL key is used."""
    (s,) = _extract('{"mcpServers": {"r": ' + entry + "}}", "mcpServers").servers
    assert (s.transport, s.url) == (transport, url)


def test_gemini_bare_url_is_sse() -> None:
    """Gemini CLI reads a bare url as SSE (httpUrl is streamable HTTP)."""
    text = '{"mcpServers": {"a": {"url": "u"}, "b": {"httpUrl": "u"}}}'
    got = _extract(text, "mcpServers", client="gemini")
    assert [s.transport for s in got.servers] == ["sse", "http"]


def test_disabled_flags() -> None:
    """disabled: true and enabled: false both mean not enabled."""
    text = '{"mcpServers": {"a": {"command": "x", "disabled": true}, "b": {"command": "x", "enabled": false}, "c": {"command": "x"}}}'
    assert [s.enabled for s in _extract(text, "mcpServers").servers] == [False, False, True]


def test_opencode_command_array() -> None:
    """OpenCode's command array splits into command and args, at their own lines."""
    text = (
        '{"mcp": {"oc": {\n  "type": "local",\n  "command": [\n    "npx",\n    "-y",\n'
        '    "pkg"\n  ],\n  "environment": {"K": "v"}\n}}}'
    )
    (s,) = _extract(text, "opencode", client="opencode").servers
    assert (s.command, s.args, s.env) == ("npx", ["-y", "pkg"], {"K": "v"})
    assert (s.line_at("/command"), s.line_at("/args/0"), s.line_at("/args/1")) == (4, 5, 6)
    assert s.line_at("/env/K") == 8
    assert s.transport == "stdio"


def test_opencode_remote() -> None:
    """OpenCode remote servers are HTTP with headers."""
    text = '{"mcp": {"r": {"type": "remote", "url": "https://r", "headers": {"A": "b"}}}}'
    (s,) = _extract(text, "opencode", client="opencode").servers
    assert (s.transport, s.url, s.headers) == ("http", "https://r", {"A": "b"})


def test_goose_extensions() -> None:
    """Goose: cmd/args/envs, uri for remote types; built-ins are skipped."""
    text = (
        "extensions:\n"
        "  dev:\n    type: builtin\n"
        "  gh:\n    type: stdio\n    cmd: npx\n    args: [a]\n    envs:\n      T: x\n"
        "  remote:\n    type: streamable_http\n    uri: https://g\n    enabled: false\n"
    )
    got = _extract(text, "goose", "yaml", "goose")
    gh, remote = got.servers
    assert (gh.name, gh.line, gh.command, gh.env) == ("gh", 4, "npx", {"T": "x"})
    assert gh.line_at("/env/T") == 9
    assert (remote.transport, remote.url, remote.enabled) == ("http", "https://g", False)
    assert remote.line_at("/url") == 12


def test_continue_yaml_list() -> None:
    """Continue's mcpServers list: pointer by index, name from name."""
    text = "mcpServers:\n  - name: a\n    command: uvx\n    args: [x]\n  - command: npx\n"
    got = _extract(text, "continue", "yaml", "continue")
    a, b = got.servers
    assert (a.name, a.pointer, a.line) == ("a", "/mcpServers/0", 2)
    assert (b.name, b.pointer, b.line) == ("1", "/mcpServers/1", 5)


def test_zed_context_servers_both_forms() -> None:
    """Zed: command/args/env or url/headers, and the older command.path form."""
    text = (
        '{"context_servers": {\n'
        '  "new": {"command": "npx", "args": ["a"]},\n'
        '  "old": {"command": {"path": "uvx", "args": ["b"], "env": {"K": "v"}}, "settings": {}},\n'
        '  "web": {"url": "https://z", "headers": {"H": "v"}}\n'
        "}}"
    )
    new, old, web = _extract(text, "context_servers", client="zed").servers
    assert (new.command, new.args) == ("npx", ["a"])
    assert (old.command, old.args, old.env) == ("uvx", ["b"], {"K": "v"})
    assert (web.transport, web.headers) == ("http", {"H": "v"})


def test_codex_toml() -> None:
    """Codex [mcp_servers.NAME] tables, http_headers, and approval settings per profile."""
    text = (
        'approval_policy = "never"\n'
        '[mcp_servers.a]\ncommand = "npx"\nargs = ["-y", "p"]\n[mcp_servers.a.env]\nK = "v"\n'
        '[mcp_servers.b]\nurl = "https://b"\nhttp_headers = { X = "y" }\n'
        '[profiles.yolo]\napproval_policy = "never"\nsandbox_mode = "danger-full-access"\n'
    )
    got = _extract(text, "codex", "toml", "codex")
    a, b = got.servers
    assert (a.line, a.env, a.line_at("/env/K"), a.line_at("/args/1")) == (2, {"K": "v"}, 6, 4)
    assert (b.transport, b.headers) == ("http", {"X": "y"})
    keys = [(s.key, s.line) for s in got.settings]
    assert keys == [
        ("approval_policy", 1),
        ("profiles.yolo.approval_policy", 11),
        ("profiles.yolo.sandbox_mode", 12),
    ]


def test_claude_json_projects() -> None:
    """~/.claude.json: user servers, per-project local servers with their project and disables."""
    text = (
        '{"mcpServers": {"u": {"command": "x"}},\n'
        ' "projects": {\n'
        '  "/home/me/app": {"mcpServers": {"l": {"command": "y"}, "off": {"command": "z"}},\n'
        '    "disabledMcpServers": ["off"], "enabledMcpjsonServers": ["t"]},\n'
        '  "/home/me/other": {"history": []}\n'
        "}}"
    )
    got = _extract(text, "claude-json", client="claude-code")
    u, local, off = got.servers
    assert (u.scope, u.project) == ("user", None)
    assert (local.scope, local.project, local.line) == ("local", "/home/me/app", 3)
    assert local.pointer == "/projects/~1home~1me~1app/mcpServers/l"
    assert off.enabled is False
    assert [(s.key, s.line) for s in got.settings] == [("enabledMcpjsonServers", 4)]


def test_vscode_settings_and_devcontainer() -> None:
    """Legacy mcp.servers in settings.json, chat settings, and dev container servers."""
    text = '{"chat.mcp.autoStart": true, "mcp": {"servers": {"a": {"command": "x"}}}}'
    got = _extract(text, "vscode-settings", client="vscode")
    assert [s.pointer for s in got.servers] == ["/mcp/servers/a"]
    assert [s.key for s in got.settings] == ["chat.mcp.autoStart"]
    text = '{"customizations": {"vscode": {"mcp": {"servers": {"d": {"command": "x"}}}}}}'
    (d,) = _extract(text, "devcontainer", client="vscode").servers
    assert d.pointer == "/customizations/vscode/mcp/servers/d"


def test_bad_values_are_reported_and_server_kept() -> None:
    """Non-scalar args and env values and a non-list args are errors; the server stays."""
    text = (
        '{"mcpServers": {\n'
        '"a": {"command": "x", "args": ["ok", null, [1]], "env": {"K": {"n": 1}, "J": "j"}},\n'
        '"b": {"command": "x", "args": "--flag"},\n'
        '"c": 3\n'
        "}}"
    )
    got = _extract(text, "mcpServers")
    a, b = got.servers
    assert a.args == ["ok", "null", "[1]"]
    assert a.env == {"J": "j"}
    assert b.args == []
    messages = [(e.server, e.line, e.message) for e in got.errors]
    assert messages == [
        ("a", 2, "args[1] is not a string"),
        ("a", 2, "args[2] is not a string"),
        ("a", 2, "env.K is not a string"),
        ("b", 3, "args is not a list"),
        ("c", 4, "server 'c' is not an object"),
    ]


def test_null_server_map_is_empty() -> None:
    """mcpServers: null is no servers, not an error."""
    assert _extract('{"mcpServers": null}', "mcpServers") == Extracted()


@pytest.mark.parametrize(
    ("value", "shape"),
    [
        ({"mcpServers": {}}, "mcpServers"),
        ({"mcpServers": []}, "continue"),
        ({"projects": {}, "mcpServers": {}}, "claude-json"),
        ({"servers": {}}, "servers"),
        ({"mcp.servers": {}}, "vscode-settings"),
        ({"context_servers": {}}, "context_servers"),
        ({"mcp_servers": {}}, "codex"),
        ({"extensions": {"g": {"cmd": "x"}}}, "goose"),
        ({"extensions": {"recommendations": ["a"]}}, None),
        ({"mcp": {}}, "opencode"),
        ({"customizations": {}}, "devcontainer"),
        ({"enableAllProjectMcpServers": True}, "claude-settings"),
        ({"name": "x"}, None),
        ([1], None),
    ],
)
def test_guess_shape(value: object, shape: str | None) -> None:
    """The shape of a file is recognised from its keys."""
    assert guess_shape(value, "json") == shape
