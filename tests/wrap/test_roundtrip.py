"""Wrap then unwrap, per format: the wrapped launch, byte-identical round trips, later edits."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from portcullis.wrap import parse_wrapped, plan_unwrap, plan_wrap
from tests.wrap.conftest import CONFIGS, GATEWAY, MemoryKeyring, load, options, write_config

ALL = sorted(CONFIGS)


def wrap_file(tmp: Path, path: Path) -> str:
    """Wrap every server of ``path`` in place; return the new text."""
    plan = plan_wrap([load(path)], options(tmp))
    text = plan.files[0].after
    path.write_text(text)
    return text


def unwrap_file(path: Path) -> str:
    """Unwrap every server of ``path`` (no secrets involved); return the new text."""
    plan = plan_unwrap([load(path)])
    return plan.files[0].after


@pytest.mark.parametrize("key", ALL)
def test_round_trip_is_byte_identical(tmp_path: Path, key: str) -> None:
    """Wrap then unwrap with no edit in between gives back the original bytes."""
    path = write_config(tmp_path, key)
    original = path.read_text()
    wrapped = wrap_file(tmp_path, path)
    assert wrapped != original
    assert unwrap_file(path) == original


@pytest.mark.parametrize("key", ALL)
def test_wrapped_entry_launches_the_gateway(tmp_path: Path, key: str) -> None:
    """The wrapped entry runs `portcullis run --policy P --server NAME … -- original argv`."""
    path = write_config(tmp_path, key)
    _, _, name = CONFIGS[key]
    before = {s.name: [s.command, *s.args] for s in load(path).servers}
    wrap_file(tmp_path, path)
    after = {s.name: s for s in load(path).servers}
    server = after[name]
    argv = [server.command or "", *server.args]
    assert argv[0] == GATEWAY
    wrapped = parse_wrapped(argv)
    assert wrapped is not None
    assert wrapped.policy == str(tmp_path / "policy.yaml")
    assert wrapped.server == name
    assert wrapped.inner == before[name]


@pytest.mark.parametrize("key", ALL)
def test_wrap_is_idempotent(tmp_path: Path, key: str) -> None:
    """Wrapping a wrapped file changes nothing and says the server is already wrapped."""
    path = write_config(tmp_path, key)
    wrap_file(tmp_path, path)
    plan = plan_wrap([load(path)], options(tmp_path))
    assert not plan.changed
    assert any("already wrapped" in n.text for n in plan.files[0].notes)


def test_other_bytes_are_untouched_by_wrap(tmp_path: Path) -> None:
    """Comments, trailing commas and other servers survive wrap as they were."""
    path = write_config(tmp_path, "jsonc")
    text = wrap_file(tmp_path, path)
    for kept in ("// Cursor, with comments", "/* the time server */", "// runner", "// tz"):
        assert kept in text
    assert '"--local-timezone=UTC",], // tz' in text


def test_multiline_args_keep_their_layout(tmp_path: Path) -> None:
    """Items added to a one-per-line array are one per line, at the same indentation."""
    path = write_config(tmp_path, "claude-desktop")
    text = wrap_file(tmp_path, path)
    assert '        "run",\n        "--policy",\n' in text
    assert '        "npx",\n        "-y",\n' in text


def test_remote_servers_are_skipped_with_a_message(tmp_path: Path) -> None:
    """A url server is left alone, pointing at `portcullis serve`."""
    path = write_config(tmp_path, "claude-desktop")
    plan = plan_wrap([load(path)], options(tmp_path))
    notes = [str(n) for n in plan.files[0].notes]
    assert any(n.startswith("web: skipped: remote servers: use `portcullis serve`") for n in notes)
    assert '"web": {"url": "https://example.com/mcp"}' in plan.files[0].after


def test_only_the_named_servers_are_wrapped(tmp_path: Path) -> None:
    """--server NAME limits wrap to those entries."""
    path = write_config(tmp_path, "codex")
    opts = options(tmp_path)
    plan = plan_wrap([load(path)], type(opts)(**{**opts.__dict__, "servers": frozenset({"bare"})}))
    after = plan.files[0].after
    assert "command = 'uvx'" in after
    assert f'command = "{GATEWAY}"' in after
    assert plan.files[0].servers == ["bare"]


# ---- unwrap after the client (or the user) edited the file ---------------------------------


def edit_and_unwrap(tmp: Path, key: str, old: str, new: str) -> str:
    """Wrap fixture ``key``, replace ``old`` by ``new`` in the wrapped text, unwrap."""
    path = write_config(tmp, key)
    wrapped = wrap_file(tmp, path)
    assert old in wrapped, wrapped
    path.write_text(wrapped.replace(old, new, 1))
    return unwrap_file(path)


def test_unwrap_keeps_a_server_added_later(tmp_path: Path) -> None:
    """A server the client added after wrap is still there after unwrap."""
    added = '"later": {"command": "uvx", "args": ["x"]},\n    "fs": {'
    text = edit_and_unwrap(tmp_path, "claude-desktop", '"fs": {', added)
    assert '"later": {"command": "uvx", "args": ["x"]}' in text
    assert '"command": "npx"' in text
    assert GATEWAY not in text


def test_unwrap_keeps_a_changed_env_var(tmp_path: Path) -> None:
    """An env value edited after wrap keeps its new value."""
    text = edit_and_unwrap(tmp_path, "claude-desktop", '"X": "1"', '"X": "2"')
    assert '"X": "2"' in text
    assert GATEWAY not in text


def test_unwrap_keeps_disabled_added_later(tmp_path: Path) -> None:
    """A `disabled: true` the client added stays."""
    text = edit_and_unwrap(
        tmp_path, "claude-desktop", '"fs": {', '"fs": {\n      "disabled": true,'
    )
    assert '"disabled": true,' in text
    server = {s.name: s for s in _loads(tmp_path, "claude-desktop", text)}["fs"]
    assert [server.command, *server.args] == [
        "npx",
        "-y",
        "@modelcontextprotocol/server-filesystem",
        "/srv/data",
    ]


def test_unwrap_keeps_inner_args_edited_later(tmp_path: Path) -> None:
    """Arguments of the original command edited after wrap are kept as edited."""
    text = edit_and_unwrap(tmp_path, "claude-desktop", '"/srv/data"', '"/srv/other"')
    server = {s.name: s for s in _loads(tmp_path, "claude-desktop", text)}["fs"]
    assert server.args == ["-y", "@modelcontextprotocol/server-filesystem", "/srv/other"]


def test_unwrap_keeps_toml_edits(tmp_path: Path) -> None:
    """Codex: a key added to the wrapped table survives unwrap."""
    text = edit_and_unwrap(
        tmp_path,
        "codex",
        'env = { "TZ" = "UTC" }',
        'env = { "TZ" = "UTC" }\nstartup_timeout_sec = 30',
    )
    assert "startup_timeout_sec = 30" in text
    assert "command = 'uvx'  # literal string" in text


def test_unwrap_keeps_yaml_edits(tmp_path: Path) -> None:
    """Goose: `enabled: false` set after wrap and an edited argument survive unwrap."""
    path = write_config(tmp_path, "goose")
    wrapped = wrap_file(tmp_path, path)
    path.write_text(wrapped.replace("enabled: true", "enabled: false").replace("- pkg", "- pkg2"))
    text = unwrap_file(path)
    assert "enabled: false" in text
    assert "    cmd: npx\n    args:\n      - -y\n      - pkg2   # pinned later\n" in text


def test_unwrap_leaves_a_rewritten_entry_alone(tmp_path: Path) -> None:
    """An entry that no longer looks like wrap's output is not touched, with a note."""
    path = write_config(tmp_path, "claude-desktop")
    wrapped = wrap_file(tmp_path, path)
    path.write_text(wrapped.replace('"run",', '"serve",', 1))
    plan = plan_unwrap([load(path)])
    assert not plan.changed
    assert any("no longer looks like wrap's output" in n.text for n in plan.files[0].notes)


def test_python_dash_m_form_round_trips(tmp_path: Path) -> None:
    """Without a portcullis script, `python -m portcullis run …` is written and undone."""
    path = write_config(tmp_path, "claude-desktop")
    original = path.read_text()
    opts = options(tmp_path)
    opts = type(opts)(**{**opts.__dict__, "gateway": ["/usr/bin/python3", "-m", "portcullis"]})
    plan = plan_wrap([load(path)], opts)
    path.write_text(plan.files[0].after)
    server = {s.name: s for s in load(path).servers}["fs"]
    assert server.command == "/usr/bin/python3"
    assert server.args[:3] == ["-m", "portcullis", "run"]
    assert unwrap_file(path) == original


def _loads(tmp: Path, key: str, text: str) -> list:  # type: ignore[type-arg]
    path = tmp / CONFIGS[key][0]
    path.write_text(text)
    return load(path).servers


@pytest.mark.parametrize("key", ALL)
def test_crlf_files_keep_crlf_and_round_trip(tmp_path: Path, key: str) -> None:
    """A CRLF file gets CRLF in the lines wrap adds, and unwrap gives back the original bytes."""
    path = write_config(tmp_path, key)
    original = path.read_text().replace("\n", "\r\n").encode()
    path.write_bytes(original)
    plan = plan_wrap([load(path)], options(tmp_path))
    wrapped = plan.files[0].after
    assert "\n" not in wrapped.replace("\r\n", "")
    path.write_bytes(wrapped.encode())
    assert plan_unwrap([load(path)]).files[0].after.encode() == original


@pytest.mark.parametrize("var", ["-x", "A=B", "LOG"])
def test_the_wrapped_launch_parses_as_run_arguments(tmp_path: Path, var: str) -> None:
    """`portcullis run` reads the wrapped arguments: every variable passed, the command intact."""
    import argparse
    import json

    from portcullis.cli import run as run_cli

    path = tmp_path / ".cursor" / "mcp.json"
    path.parent.mkdir()
    entry = {"command": "x", "args": ["--", "-y"], "env": {var: "1"}}
    path.write_text(json.dumps({"mcpServers": {"s": entry}}))
    wrap_file(tmp_path, path)
    server = load(path).servers[0]
    parser = argparse.ArgumentParser()
    run_cli.register(parser.add_subparsers())
    args = parser.parse_args(server.args)
    assert args.pass_env == [var]
    assert args.command == ["--", "x", "--", "-y"]
    assert unwrap_file(path) == json.dumps({"mcpServers": {"s": entry}})


def test_a_yaml_alias_never_lets_wrap_edit_another_server(tmp_path: Path) -> None:
    """An entry whose args are an alias of another's is left alone, and the other is intact."""
    path = tmp_path / "goose" / "config.yaml"
    path.parent.mkdir()
    text = (
        "extensions:\n"
        "  a:\n    cmd: npx\n    args: &common [-y, pkg]\n    type: stdio\n"
        "  b:\n    cmd: npx\n    args: *common\n    type: stdio\n"
    )
    path.write_text(text)
    opts = dataclasses.replace(options(tmp_path), servers=frozenset({"b"}))
    plan = plan_wrap([load(path)], opts)
    assert plan.files[0].after == text
    assert plan.policy is None
    assert any(n.warn and "not wrapped" in n.text for n in plan.files[0].notes)


def test_an_anchored_entry_is_wrapped_only_when_nothing_else_changes(tmp_path: Path) -> None:
    """Wrapping every server of a file with anchors never changes an entry wrap refused."""
    path = tmp_path / "goose" / "config.yaml"
    path.parent.mkdir()
    path.write_text(
        "extensions:\n"
        "  a:\n    cmd: npx\n    args: &common [-y, pkg]\n    type: stdio\n"
        "  b:\n    cmd: npx\n    args: *common\n    type: stdio\n"
        "  c:\n    cmd: uvx\n    args: [time]\n    type: stdio\n"
    )
    plan = plan_wrap([load(path)], options(tmp_path))
    path.write_text(plan.files[0].after)
    launches = {s.name: [s.command, *s.args] for s in load(path).servers}
    wrapped = {name: parse_wrapped(argv) for name, argv in launches.items()}  # type: ignore[arg-type]
    for name, got in wrapped.items():
        if got is None:
            assert launches[name] in (["npx", "-y", "pkg"], ["uvx", "time"])
        else:
            assert got.server == name


@pytest.mark.parametrize(
    "argv",
    [
        ["portcullis", "run", "npx", "pkg"],
        ["/usr/bin/python3", "-m", "portcullis", "run", "--policy"],
        ["portcullis", "serve"],
    ],
)
def test_an_entry_that_already_runs_portcullis_is_not_wrapped_again(
    tmp_path: Path, argv: list[str]
) -> None:
    """A gateway set up by hand, in a form wrap does not write, gets no second gateway."""
    import json

    path = tmp_path / ".cursor" / "mcp.json"
    path.parent.mkdir()
    path.write_text(json.dumps({"mcpServers": {"s": {"command": argv[0], "args": argv[1:]}}}))
    plan = plan_wrap([load(path)], options(tmp_path))
    assert not plan.changed
    assert any("already runs portcullis" in n.text for n in plan.files[0].notes)


def test_a_duplicate_env_key_never_corrupts_the_entry(
    tmp_path: Path, memory_keyring: MemoryKeyring
) -> None:
    """An env with a key written twice is left as it was (with a warning), not half-edited."""
    path = tmp_path / ".cursor" / "mcp.json"
    path.parent.mkdir()
    text = (
        '{"mcpServers": {"s": {"command": "x", "env": '
        '{"GH_TOKEN": "aaaaaaaaaaaa", "B": "1", "GH_TOKEN": "bbbbbbbbbbbbbb"}}}}'
    )
    path.write_text(text)
    plan = plan_wrap([load(path)], options(tmp_path, keyring_ok=True))
    assert plan.files[0].after == text
    assert plan.secrets == [] and plan.policy is None
    assert any(n.warn and "not wrapped" in n.text for n in plan.files[0].notes)


@pytest.mark.parametrize(
    ("cmd", "args"),
    [("?x", "    args: [a]\n"), (":x", "    args: [a]\n"), ("a,b{c}", ""), ("a #b", "")],
)
def test_a_plain_yaml_command_keeps_its_value_and_round_trips(
    tmp_path: Path, cmd: str, args: str
) -> None:
    """A plain command that flow context would misread is quoted there; in a block list kept."""
    import yaml

    path = tmp_path / "goose" / "config.yaml"
    path.parent.mkdir()
    text = f"extensions:\n  s:\n    cmd: {cmd}\n{args}    type: stdio\n"
    path.write_text(text)
    value = yaml.safe_load(text)["extensions"]["s"]["cmd"]
    wrap_file(tmp_path, path)
    server = load(path).servers[0]
    wrapped = parse_wrapped([server.command or "", *server.args])
    assert wrapped is not None
    assert wrapped.inner[0] == value
    if not args:
        assert unwrap_file(path) == text


def test_an_env_file_the_gateway_would_not_pass_on_is_warned_about(tmp_path: Path) -> None:
    """VS Code's envFile variables are not passed by `run`: wrap says so."""
    import json

    path = tmp_path / ".vscode" / "mcp.json"
    path.parent.mkdir()
    entry = {"type": "stdio", "command": "x", "envFile": "${workspaceFolder}/.env"}
    path.write_text(json.dumps({"servers": {"s": entry}}))
    plan = plan_wrap([load(path)], options(tmp_path))
    assert plan.files[0].servers == ["s"]
    assert any(n.warn and "envFile" in n.text for n in plan.files[0].notes)
