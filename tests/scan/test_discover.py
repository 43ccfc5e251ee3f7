"""Discovery of client configuration files on fake homes of every OS layout."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from portcullis.scan.discover import (
    MAX_BYTES,
    discover,
    guess_client,
    load_file,
    load_paths,
    read_config,
)
from portcullis.scan.model import ConfigFile, ScanError, Server
from portcullis.scan.parse import ParseError
from tests.scan.fixtures.mcp_homes import build_home

SYSTEMS = ["Linux", "Darwin", "Windows"]


def _servers(files: list[ConfigFile]) -> dict[str, Server]:
    out: dict[str, Server] = {}
    for f in files:
        for s in f.servers:
            assert s.name not in out, f"{s.name} reported twice"
            out[s.name] = s
    return out


def _run(lay):  # type: ignore[no-untyped-def]
    return discover(home=lay.home, cwd=lay.cwd, env=lay.env, system=lay.system)


@pytest.mark.parametrize("system", SYSTEMS)
def test_every_client_found_with_scope_pointer_and_line(tmp_path: Path, system: str) -> None:
    """Each server of each client's documented file is found with client, scope and line."""
    lay = build_home(tmp_path, system)
    files, errors = _run(lay)
    assert errors == []
    found = _servers(files)
    for exp in lay.expected:
        assert exp.name in found, f"{exp.client} {exp.path} not discovered"
        s = found[exp.name]
        assert (s.client, s.scope, s.file, s.pointer, s.line) == (
            exp.client,
            exp.scope,
            exp.path,
            exp.pointer,
            exp.line,
        ), exp
        if exp.project is not None:
            assert s.project == exp.project
    assert set(found) == {e.name for e in lay.expected}


@pytest.mark.parametrize("system", SYSTEMS)
def test_every_client_has_a_file(tmp_path: Path, system: str) -> None:
    """The fixture covers the whole client table, so no client is silently untested."""
    from portcullis.scan.clients import CLIENTS

    lay = build_home(tmp_path, system)
    assert {e.client for e in lay.expected} == set(CLIENTS)


def test_normalised_entries(tmp_path: Path) -> None:
    """Client-specific keys are normalised (serverUrl, httpUrl, cmd/envs, command arrays)."""
    lay = build_home(tmp_path, "Linux")
    found = _servers(_run(lay)[0])
    assert found["windsurf-remote"].url == "https://w.example/mcp"
    assert found["windsurf-remote"].transport == "http"
    assert found["gemini-sse"].transport == "sse"
    assert found["gemini-http"].transport == "http"
    assert found["cc-local"].headers == {"Authorization": "Bearer ${TOKEN}"}
    assert found["vscode-profile"].transport == "sse"
    goose = found["goose-gh"]
    assert (goose.command, goose.args, goose.env, goose.enabled) == (
        "npx",
        ["-y", "@goose/gh"],
        {"GITHUB_TOKEN": "ghp_x"},
        False,
    )
    oc = found["oc-local"]
    assert (oc.command, oc.args, oc.env) == ("npx", ["-y", "@oc/server"], {"OC_KEY": "k"})
    assert found["oc-remote"].enabled is False
    assert found["oc-remote"].transport == "http"
    assert found["codex-remote"].headers == {"X-Team": "a"}
    assert found["codex-docs"].env == {"DOCS_TOKEN": "t"}
    assert found["continue-remote"].transport == "http"
    assert found["cline-Code"].raw["alwaysAllow"] == ["a"]


def test_goose_builtin_extensions_are_not_servers(tmp_path: Path) -> None:
    """Goose's built-in extensions run inside Goose: nothing to scan."""
    lay = build_home(tmp_path, "Linux")
    assert "developer" not in _servers(_run(lay)[0])


def test_positions_point_at_the_clients_own_keys(tmp_path: Path) -> None:
    """Normalised pointers map to the lines where Goose and OpenCode wrote their keys."""
    lay = build_home(tmp_path, "Linux")
    found = _servers(_run(lay)[0])
    goose_lines = found["goose-gh"].file.read_text().splitlines()
    g = found["goose-gh"]
    assert "cmd: npx" in goose_lines[g.line_at("/command") - 1]
    assert "GITHUB_TOKEN" in goose_lines[g.line_at("/env/GITHUB_TOKEN") - 1]
    assert "'@goose/gh'" in goose_lines[g.line_at("/args/1") - 1]
    oc = found["oc-local"]
    oc_lines = oc.file.read_text().splitlines()
    assert '"command"' in oc_lines[oc.line_at("/command") - 1]
    assert '"environment"' in oc_lines[oc.line_at("/env/OC_KEY") - 1]
    vs = found["vscode-legacy"]
    assert '"vscode-legacy"' in vs.file.read_text().splitlines()[vs.line_at("/args/0") - 1]


def test_settings_are_reported(tmp_path: Path) -> None:
    """enableAllProjectMcpServers, Codex approval_policy and VS Code auto-approve are settings."""
    lay = build_home(tmp_path, "Linux")
    files, _ = _run(lay)
    settings = {(f.client, s.key): s for f in files for s in f.settings}
    assert settings["claude-code", "enableAllProjectMcpServers"].value is True
    assert settings["codex", "approval_policy"].line == 2
    assert settings["vscode", "chat.tools.autoApprove"].line == 3
    project_settings = [f for f in files if f.path == lay.project / ".claude" / "settings.json"]
    assert project_settings[0].servers == []
    assert project_settings[0].settings[0].line == 3


def test_missing_files_are_silent(tmp_path: Path) -> None:
    """An empty home yields no files and no errors."""
    home = tmp_path / "home"
    home.mkdir()
    assert discover(home=home, cwd=None, env={}, system="Linux") == ([], [])


def test_project_scope_walks_ancestors_up_to_home(tmp_path: Path) -> None:
    """A .mcp.json in cwd's ancestors up to home is found, nearest first; none above home."""
    home = tmp_path / "home"
    (home / "a" / "b").mkdir(parents=True)
    (home / "a" / ".mcp.json").write_text('{"mcpServers": {"up": {"command": "x"}}}')
    (home / ".mcp.json").write_text('{"mcpServers": {"home": {"command": "x"}}}')
    (tmp_path / ".mcp.json").write_text('{"mcpServers": {"above": {"command": "x"}}}')
    files, errors = discover(home=home, cwd=home / "a" / "b", env={}, system="Linux")
    assert errors == []
    assert [(s.name, s.project) for f in files for s in f.servers] == [
        ("up", str(home / "a")),
        ("home", str(home)),
    ]


def test_user_file_that_is_also_a_project_file_is_read_once(tmp_path: Path) -> None:
    """With cwd at home, ~/.gemini/settings.json is a user file, read once."""
    home = _home_with(tmp_path, ".gemini/settings.json", '{"mcpServers": {"g": {"url": "u"}}}')
    files, _ = discover(home=home, cwd=home, env={}, system="Linux")
    assert [(f.client, f.scope) for f in files] == [("gemini", "user")]


def test_claude_config_dir_relocates(tmp_path: Path) -> None:
    """CLAUDE_CONFIG_DIR moves ~/.claude.json and ~/.claude."""
    home = tmp_path / "home"
    conf = tmp_path / "cc"
    conf.mkdir(parents=True)
    home.mkdir()
    (conf / ".claude.json").write_text('{"mcpServers": {"moved": {"command": "x"}}}')
    files, _ = discover(home=home, cwd=None, env={"CLAUDE_CONFIG_DIR": str(conf)}, system="Linux")
    assert [s.name for f in files for s in f.servers] == ["moved"]


def _home_with(tmp_path: Path, rel: str, data: bytes | str) -> Path:
    home = tmp_path / "home"
    path = home / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_text(data)
    return home


@pytest.mark.parametrize(
    ("rel", "data", "line"),
    [
        (".cursor/mcp.json", '{\n  "mcpServers": {\n    "a": {"command": "x"\n  }\n', 5),
        (".codex/config.toml", "[mcp_servers.a]\ncommand = \n", 2),
        (".config/goose/config.yaml", "extensions:\n  a: [\n  b: }\n", 3),
        (".cursor/mcp.json", b'{"mcpServers": {}}\n\xff\xfe\x00garbage', 2),
        (".cursor/mcp.json", b"\x00\x01\x02\x03", 1),
        (".cursor/mcp.json", "", 1),
    ],
)
def test_broken_files_are_errors_with_lines(
    tmp_path: Path, rel: str, data: bytes | str, line: int
) -> None:
    """Bad JSON, TOML, YAML and binary garbage are ScanErrors with the line, not exceptions."""
    home = _home_with(tmp_path, rel, data)
    files, errors = discover(home=home, cwd=None, env={}, system="Linux")
    assert files == []
    assert len(errors) == 1
    assert errors[0].kind == "config"
    assert errors[0].file == str(home / rel)
    assert errors[0].line == line


def test_directory_where_a_file_should_be(tmp_path: Path) -> None:
    """A directory at a config path is reported."""
    home = tmp_path / "home"
    (home / ".cursor" / "mcp.json").mkdir(parents=True)
    _, errors = discover(home=home, cwd=None, env={}, system="Linux")
    assert [e.message for e in errors] == ["is a directory, expected a file"]


def test_permission_denied(tmp_path: Path) -> None:
    """An unreadable file is reported (needs a non-root user)."""
    if os.geteuid() == 0:
        pytest.skip("running as root: chmod 000 does not stop root from reading")
    home = _home_with(tmp_path, ".cursor/mcp.json", '{"mcpServers": {}}')
    path = home / ".cursor" / "mcp.json"
    path.chmod(0)
    try:
        _, errors = discover(home=home, cwd=None, env={}, system="Linux")
    finally:
        path.chmod(0o600)
    assert [e.message for e in errors] == ["permission denied"]


def test_oversized_file_is_not_read(tmp_path: Path) -> None:
    """A file over 20 MB is a ScanError without being parsed."""
    home = _home_with(tmp_path, ".cursor/mcp.json", "")
    with open(home / ".cursor" / "mcp.json", "wb") as fh:
        fh.truncate(MAX_BYTES + 1)
    start = time.perf_counter()
    _, errors = discover(home=home, cwd=None, env={}, system="Linux")
    assert time.perf_counter() - start < 1
    assert len(errors) == 1
    assert "larger than 20 MB" in errors[0].message


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '{"mcpServers": [{"command": "x"}]}',
            "mcpServers is a list, expected an object of servers",
        ),
        ('[{"command": "x"}]', "the file's top level is not an object"),
    ],
)
def test_unexpected_shapes(tmp_path: Path, text: str, message: str) -> None:
    """A list where servers should be a map is a ScanError with its line."""
    home = _home_with(tmp_path, ".cursor/mcp.json", text)
    files, errors = discover(home=home, cwd=None, env={}, system="Linux")
    assert [e.message for e in errors] == [message]
    assert errors[0].line == 1
    assert files[0].servers == []


def test_bad_entry_keeps_the_good_servers(tmp_path: Path) -> None:
    """A server that is not an object is an error; the file's other servers are kept."""
    text = '{\n"mcpServers": {\n"bad": "npx x",\n"good": {"command": "npx", "args": ["a", {"b": 1}, 2]}\n}}'
    home = _home_with(tmp_path, ".cursor/mcp.json", text)
    files, errors = discover(home=home, cwd=None, env={}, system="Linux")
    assert [s.name for s in files[0].servers] == ["good"]
    assert files[0].servers[0].args == ["a", '{"b": 1}', "2"]
    assert [(e.server, e.line) for e in errors] == [("bad", 3), ("good", 4)]


def test_duplicate_keys_last_wins(tmp_path: Path) -> None:
    """Duplicate keys resolve as JSON.parse does: the last one wins, at its own line."""
    text = '{"mcpServers": {\n"a": {"command": "old"},\n"a": {"command": "new"}\n}}'
    home = _home_with(tmp_path, ".cursor/mcp.json", text)
    files, _ = discover(home=home, cwd=None, env={}, system="Linux")
    (server,) = files[0].servers
    assert (server.command, server.line) == ("new", 3)


def test_symlinked_file_read_once(tmp_path: Path) -> None:
    """A file reached through two candidate paths is read once."""
    home = _home_with(tmp_path, ".cursor/mcp.json", '{"mcpServers": {"a": {"command": "x"}}}')
    (home / ".kiro" / "settings").mkdir(parents=True)
    (home / ".kiro" / "settings" / "mcp.json").symlink_to(home / ".cursor" / "mcp.json")
    files, _ = discover(home=home, cwd=None, env={}, system="Linux")
    assert [f.client for f in files] == ["cursor"]


def test_plugin_glob_does_not_follow_symlinked_dirs(tmp_path: Path) -> None:
    """A symlinked directory in the plugin cache is not followed out of home."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / ".mcp.json").write_text('{"mcpServers": {"evil": {"command": "x"}}}')
    home = tmp_path / "home"
    (home / ".claude" / "plugins" / "cache").mkdir(parents=True)
    (home / ".claude" / "plugins" / "cache" / "link").symlink_to(outside)
    files, errors = discover(home=home, cwd=None, env={}, system="Linux")
    assert (files, errors) == ([], [])


def test_discover_is_fast(tmp_path: Path) -> None:
    """Discovery of a full fixture home takes milliseconds, not seconds."""
    lay = build_home(tmp_path, "Linux")
    _run(lay)
    start = time.perf_counter()
    _run(lay)
    assert time.perf_counter() - start < 0.5


# --- load_file / load_paths ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("rel", "client"),
    [
        ("Claude/claude_desktop_config.json", "claude-desktop"),
        ("proj/.mcp.json", "claude-code"),
        ("h/.claude.json", "claude-code"),
        ("proj/.vscode/mcp.json", "vscode"),
        ("Code/User/mcp.json", "vscode"),
        ("Code - Insiders/User/mcp.json", "vscode-insiders"),
        ("proj/.cursor/mcp.json", "cursor"),
        ("h/.codeium/windsurf/mcp_config.json", "windsurf"),
        ("h/.codex/config.toml", "codex"),
        ("h/.config/goose/config.yaml", "goose"),
        ("proj/opencode.jsonc", "opencode"),
        ("h/.continue/config.yaml", "continue"),
        ("h/.gemini/settings.json", "gemini"),
        ("h/.config/zed/settings.json", "zed"),
        ("proj/.junie/mcp/mcp.json", "junie"),
        ("proj/.amazonq/mcp.json", "amazonq"),
        ("proj/.kiro/settings/mcp.json", "kiro"),
        ("h/.lmstudio/mcp.json", "lmstudio"),
        ("h/.copilot/mcp-config.json", "copilot-cli"),
        ("x/globalStorage/saoudrizwan.claude-dev/settings/cline_mcp_settings.json", "cline"),
        ("x/globalStorage/rooveterinaryinc.roo-cline/settings/mcp_settings.json", "roo"),
        ("proj/.devcontainer/devcontainer.json", "vscode"),
    ],
)
def test_guess_client_by_path(rel: str, client: str) -> None:
    """Documented file names map to their client."""
    guessed = guess_client(Path("/r") / rel)
    assert guessed is not None
    assert guessed[0] == client


@pytest.mark.parametrize(
    ("data", "client", "count"),
    [
        ({"mcpServers": {"a": {"command": "x"}}}, "unknown", 1),
        ({"servers": {"a": {"command": "x"}}}, "vscode", 1),
        ({"mcp": {"servers": {"a": {"command": "x"}}}}, "vscode", 1),
        ({"context_servers": {"a": {"command": "x"}}}, "zed", 1),
        ({"extensions": {"a": {"type": "stdio", "cmd": "x"}}}, "goose", 1),
        ({"mcp": {"a": {"type": "local", "command": ["x"]}}}, "opencode", 1),
        ({"name": "x", "version": 1}, "unknown", 0),
    ],
)
def test_load_file_guesses_by_shape(tmp_path: Path, data: object, client: str, count: int) -> None:
    """A file with a generic name is judged by its keys; no known key means no servers."""
    path = tmp_path / "custom.json"
    path.write_text(json.dumps(data))
    file = load_file(path)
    assert (file.client, len(file.servers), file.scope) == (client, count, "given")


def test_load_file_toml_by_shape(tmp_path: Path) -> None:
    """A TOML file with mcp_servers reads as Codex."""
    path = tmp_path / "x.toml"
    path.write_text('[mcp_servers.a]\ncommand = "x"\n')
    assert load_file(path).client == "codex"


def test_load_file_named_client(tmp_path: Path) -> None:
    """A named client decides the shape, and an empty file of it is no servers, not unknown."""
    path = tmp_path / "x.json"
    path.write_text("{}")
    file = load_file(path, client="cursor", scope="user")
    assert (file.client, file.scope, file.servers) == ("cursor", "user", [])
    path.write_text('{"context_servers": {"a": {"command": "x"}}}')
    assert load_file(path, client="zed").servers[0].name == "a"


def test_load_file_raises(tmp_path: Path) -> None:
    """load_file raises ParseError with the line, or OSError."""
    path = tmp_path / "x.json"
    path.write_text('{\n  "mcpServers": {,}\n}')
    with pytest.raises(ParseError) as info:
        load_file(path)
    assert info.value.line == 2
    with pytest.raises(OSError, match="No such file"):
        load_file(tmp_path / "missing.json")


def test_read_config_returns_entry_problems(tmp_path: Path) -> None:
    """read_config returns the ConfigFile and the problems of its entries."""
    path = tmp_path / ".mcp.json"
    path.write_text('{"mcpServers": {"a": {"command": "x", "env": {"K": ["no"]}}}}')
    file, problems = read_config(path)
    assert file.servers[0].env == {}
    assert [p.message for p in problems] == ["env.K is not a string"]


def test_load_paths_walks_a_repository(tmp_path: Path) -> None:
    """A folder is walked for project files, pruning node_modules and .git."""
    repo = tmp_path / "repo"
    for rel in (
        ".mcp.json",
        "sub/.cursor/mcp.json",
        "node_modules/pkg/.mcp.json",
        ".git/x/.mcp.json",
        "a/b/c/d/e/f/g/.mcp.json",
    ):
        p = repo / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text('{"mcpServers": {"s": {"command": "x"}}}')
    (repo / "package.json").write_text('{"name": "x"}')
    files, errors = load_paths([repo])
    assert errors == []
    assert sorted(str(f.path.relative_to(repo)) for f in files) == [
        ".mcp.json",
        "sub/.cursor/mcp.json",
    ]
    assert {f.scope for f in files} == {"given"}


def test_load_paths_missing_and_files(tmp_path: Path) -> None:
    """A missing path is an error; a file is read whatever its name."""
    given = tmp_path / "my.json"
    given.write_text('{"mcpServers": {"s": {"command": "x"}}}')
    files, errors = load_paths([given, tmp_path / "nope"])
    assert [f.path for f in files] == [given]
    assert errors == [ScanError("no such file or directory", str(tmp_path / "nope"))]


def test_load_paths_broken_file(tmp_path: Path) -> None:
    """A broken file given on the command line is an error with its line."""
    given = tmp_path / "config.toml"
    given.write_text("a = 1\nb = = 2\n")
    files, errors = load_paths([given])
    assert files == []
    assert errors[0].line == 2


def test_fifo_named_directly_never_hangs(tmp_path: Path) -> None:
    """read_config on a FIFO (a file swapped after the stat) fails at once, not blocks."""
    import threading

    fifo = tmp_path / ".mcp.json"
    os.mkfifo(fifo)
    got: list[BaseException] = []

    def read() -> None:
        try:
            read_config(fifo)
        except BaseException as exc:
            got.append(exc)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(5)
    hung = reader.is_alive()
    if hung:  # unblock the stuck open so the thread can end
        with open(fifo, "wb"):
            pass
    assert not hung
    assert len(got) == 1 and isinstance(got[0], OSError)


def test_fifo_in_a_walked_repository_is_an_error(tmp_path: Path) -> None:
    """A repository's .mcp.json that is a FIFO is reported, and the scan goes on."""
    os.mkfifo(tmp_path / ".mcp.json")
    files, errors = load_paths([tmp_path])
    assert files == []
    assert [e.message for e in errors] == ["not a regular file"]


def test_a_named_file_of_no_known_shape_is_an_error(tmp_path: Path) -> None:
    """A file the user names that holds no MCP configuration is an error, not a clean scan."""
    named = tmp_path / "config.json"
    named.write_text('{"mcp_server": {"a": {"command": "x"}}}')
    files, errors = load_paths([named])
    assert [f.client for f in files] == ["unknown"]
    (error,) = errors
    assert "not recognised" in error.message and error.file == str(named)


def test_walk_does_not_follow_file_symlinks_out_of_the_folder(tmp_path: Path) -> None:
    """A repository's .mcp.json linking to the user's own config is reported, not read."""
    home, repo = tmp_path / "home", tmp_path / "repo"
    (home / ".cursor").mkdir(parents=True)
    (home / ".cursor" / "mcp.json").write_text('{"mcpServers": {"mine": {"command": "x"}}}')
    (repo / ".vscode").mkdir(parents=True)
    (repo / ".mcp.json").symlink_to(home / ".cursor" / "mcp.json")
    (repo / "shared.json").write_text('{"servers": {"ok": {"command": "y"}}}')
    (repo / ".vscode" / "mcp.json").symlink_to(repo / "shared.json")
    files, errors = load_paths([repo])
    assert [s.name for f in files for s in f.servers] == ["ok"]
    (error,) = errors
    assert error.file == str(repo / ".mcp.json") and "outside the folder" in error.message


def test_parse_errors_never_quote_a_credential(tmp_path: Path) -> None:
    """A broken file whose error names the key it stopped at shows the key masked."""
    token = "ghp_" + "Zq8mR2vX7kP4nW9tY3bL6cJ1hF5dG0sA8eQ2"
    broken = tmp_path / ".mcp.json"
    broken.write_text('{"mcpServers": {"' + token + '" "x"}}')
    _, errors = load_paths([broken])
    (error,) = errors
    assert "cannot parse" in error.message and token not in error.message


def test_a_bug_on_one_file_does_not_stop_the_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unexpected exception while reading one file is that file's error; the rest is read."""
    import portcullis.scan.discover as discover_module

    real = discover_module.extract

    def flaky(doc: Any, **kwargs: Any) -> Any:
        if kwargs["path"].name == ".mcp.json":
            raise TypeError("secret-ish text")
        return real(doc, **kwargs)

    monkeypatch.setattr(discover_module, "extract", flaky)
    (tmp_path / ".mcp.json").write_text('{"mcpServers": {"a": {"command": "x"}}}')
    (tmp_path / ".cursor").mkdir()
    (tmp_path / ".cursor" / "mcp.json").write_text('{"mcpServers": {"b": {"command": "y"}}}')
    files, errors = load_paths([tmp_path])
    assert [s.name for f in files for s in f.servers] == ["b"]
    (error,) = errors
    assert "TypeError" in error.message and "secret-ish" not in error.message
