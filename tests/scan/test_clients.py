"""The client table: candidate paths per OS, scope and environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from portcullis.scan.clients import CLIENTS, Context, Glob, candidates, client_paths, expand

HOME = Path("/h/me")
WIN = {
    "USERPROFILE": "/w/Users/me",
    "APPDATA": "/w/Users/me/AppData/Roaming",
    "ProgramData": "/w/ProgramData",
    "ProgramFiles": "/w/Program Files",
}


def _paths(client: str, system: str, env: dict[str, str] | None = None, cwd: Path | None = None):  # type: ignore[no-untyped-def]
    return client_paths(client, home=HOME, cwd=cwd, env=env or {}, system=system)


@pytest.mark.parametrize(
    ("system", "env", "expected"),
    [
        ("Darwin", {}, "/h/me/Library/Application Support/Claude/claude_desktop_config.json"),
        ("Windows", WIN, "/w/Users/me/AppData/Roaming/Claude/claude_desktop_config.json"),
        ("Linux", {}, "/h/me/.config/Claude/claude_desktop_config.json"),
        ("Linux", {"XDG_CONFIG_HOME": "/x"}, "/x/Claude/claude_desktop_config.json"),
    ],
)
def test_claude_desktop(system: str, env: dict[str, str], expected: str) -> None:
    """Claude Desktop lives in the per-user application data folder."""
    assert _paths("claude-desktop", system, env) == [Path(expected)]


@pytest.mark.parametrize(
    ("system", "env", "managed"),
    [
        ("Linux", {}, "/etc/claude-code"),
        ("Darwin", {}, "/Library/Application Support/ClaudeCode"),
        ("Windows", WIN, "/w/Program Files/ClaudeCode"),
    ],
)
def test_claude_code(system: str, env: dict[str, str], managed: str) -> None:
    """Claude Code: ~/.claude.json, settings, project .mcp.json, managed files."""
    paths = _paths("claude-code", system, env, cwd=HOME / "p")
    assert paths[:2] == [HOME / ".claude.json", HOME / ".claude" / "settings.json"]
    assert HOME / "p" / ".mcp.json" in paths
    assert HOME / "p" / ".claude" / "settings.local.json" in paths
    assert Path(managed) / "managed-mcp.json" in paths
    assert Path(managed) / "managed-settings.json" in paths


def test_windows_managed_needs_its_variable() -> None:
    """Without ProgramFiles no machine path is guessed (it would be relative elsewhere)."""
    paths = _paths("claude-code", "Windows", {"USERPROFILE": "/w/me"})
    assert all("ClaudeCode" not in str(p) for p in paths)


def test_claude_config_dir() -> None:
    """CLAUDE_CONFIG_DIR relocates both ~/.claude.json and ~/.claude."""
    paths = _paths("claude-code", "Linux", {"CLAUDE_CONFIG_DIR": "/c"})
    assert paths[:2] == [Path("/c/.claude.json"), Path("/c/settings.json")]


@pytest.mark.parametrize(
    ("system", "env", "user"),
    [
        ("Linux", {}, "/h/me/.config/Code/User"),
        ("Darwin", {}, "/h/me/Library/Application Support/Code/User"),
        ("Windows", WIN, "/w/Users/me/AppData/Roaming/Code/User"),
    ],
)
def test_vscode(system: str, env: dict[str, str], user: str) -> None:
    """VS Code: user mcp.json and legacy settings.json; workspace .vscode/mcp.json."""
    paths = _paths("vscode", system, env, cwd=HOME / "p")
    assert paths[:2] == [Path(user) / "mcp.json", Path(user) / "settings.json"]
    assert HOME / "p" / ".vscode" / "mcp.json" in paths
    assert HOME / "p" / ".devcontainer" / "devcontainer.json" in paths
    insiders = _paths("vscode-insiders", system, env, cwd=HOME / "p")
    assert insiders[0] == Path(user.replace("Code", "Code - Insiders")) / "mcp.json"
    assert not any(".vscode" in str(p) for p in insiders)


def test_cline_and_roo_in_every_vscode_family_editor() -> None:
    """Cline and Roo are looked for in the globalStorage of Code, Insiders, Cursor, Windsurf."""
    cline = _paths("cline", "Linux")
    apps = {p.parts[4] for p in cline}
    assert apps == {"Code", "Code - Insiders", "Cursor", "Windsurf", "VSCodium"}
    assert cline[0] == Path(
        "/h/me/.config/Code/User/globalStorage/saoudrizwan.claude-dev/settings/"
        "cline_mcp_settings.json"
    )
    roo = _paths("roo", "Linux", cwd=HOME / "p")
    assert roo[-2:] == [HOME / "p" / ".roo" / "mcp.json", HOME / ".roo" / "mcp.json"]


@pytest.mark.parametrize(
    ("client", "system", "env", "first"),
    [
        ("cursor", "Windows", WIN, "/w/Users/me/.cursor/mcp.json"),
        ("windsurf", "Darwin", {}, "/h/me/.codeium/windsurf/mcp_config.json"),
        ("zed", "Darwin", {}, "/h/me/.config/zed/settings.json"),
        ("zed", "Windows", WIN, "/w/Users/me/AppData/Roaming/Zed/settings.json"),
        ("gemini", "Linux", {}, "/h/me/.gemini/settings.json"),
        ("codex", "Linux", {"CODEX_HOME": "/cx"}, "/cx/config.toml"),
        ("codex", "Windows", WIN, "/w/Users/me/.codex/config.toml"),
        ("goose", "Darwin", {}, "/h/me/.config/goose/config.yaml"),
        ("goose", "Windows", WIN, "/w/Users/me/AppData/Roaming/Block/goose/config/config.yaml"),
        ("opencode", "Linux", {"OPENCODE_CONFIG": "/o.json"}, "/o.json"),
        ("opencode", "Windows", WIN, "/h/me/.config/opencode/opencode.json"),
        ("continue", "Linux", {}, "/h/me/.continue/config.yaml"),
        ("lmstudio", "Windows", WIN, "/w/Users/me/.lmstudio/mcp.json"),
        ("amazonq", "Linux", {}, "/h/me/.aws/amazonq/mcp.json"),
        ("kiro", "Linux", {}, "/h/me/.kiro/settings/mcp.json"),
        ("junie", "Linux", {}, "/h/me/.junie/mcp/mcp.json"),
        ("copilot-cli", "Linux", {"COPILOT_HOME": "/cp"}, "/cp/mcp-config.json"),
        ("copilot-cli", "Linux", {}, "/h/me/.copilot/mcp-config.json"),
        ("antigravity", "Linux", {}, "/h/me/.gemini/antigravity/mcp_config.json"),
    ],
)
def test_user_locations(client: str, system: str, env: dict[str, str], first: str) -> None:
    """The first candidate of each client is its documented user file."""
    assert _paths(client, system, env)[0] == Path(first)


def test_system_locations() -> None:
    """Gemini, Codex and OpenCode machine-wide files per OS."""
    assert Path("/etc/gemini-cli/settings.json") in _paths("gemini", "Linux")
    assert Path("/Library/Application Support/GeminiCli/settings.json") in _paths(
        "gemini", "Darwin"
    )
    assert Path("/w/ProgramData/gemini-cli/settings.json") in _paths("gemini", "Windows", WIN)
    assert Path("/etc/codex/config.toml") in _paths("codex", "Linux")
    assert Path("/etc/opencode/opencode.json") in _paths("opencode", "Linux")


def test_project_dirs_nearest_first_and_stop_at_home() -> None:
    """Project candidates run from cwd up to home, listed once each."""
    paths = _paths("cursor", "Linux", cwd=HOME / "a" / "b")
    assert paths == [
        HOME / ".cursor" / "mcp.json",
        HOME / "a" / "b" / ".cursor" / "mcp.json",
        HOME / "a" / ".cursor" / "mcp.json",
    ]
    assert _paths("claude-code", "Linux", cwd=HOME)[2] == HOME / ".mcp.json"


def test_cwd_outside_home_is_only_itself() -> None:
    """A cwd outside home is one project directory, not its ancestors."""
    paths = _paths("cursor", "Linux", cwd=Path("/srv/repo"))
    assert paths == [HOME / ".cursor" / "mcp.json", Path("/srv/repo/.cursor/mcp.json")]


def test_unknown_client() -> None:
    """An unknown client id is a ValueError naming the known ones."""
    with pytest.raises(ValueError, match="claude-desktop"):
        _paths("nope", "Linux")


def test_every_client_has_candidates() -> None:
    """Every client in the table yields at least one location on every OS."""
    for system in ("Linux", "Darwin", "Windows"):
        ctx = Context(HOME, HOME / "p", WIN if system == "Windows" else {}, system)
        for client in CLIENTS:
            assert candidates(client, ctx), (client, system)


def test_glob_expansion_and_cap(tmp_path: Path) -> None:
    """Globs match by name or suffix and stop, reporting it, at their limit."""
    for i in range(5):
        (tmp_path / f"p{i}").mkdir()
        (tmp_path / f"p{i}" / "mcp.json").write_text("{}")
    (tmp_path / "x.json").write_text("{}")
    found, capped = expand(Glob(tmp_path, (".json",), "mcp.json", nested=1))
    assert (len(found), capped) == (5, False)
    found, capped = expand(Glob(tmp_path, (".json",), "mcp.json", nested=1, limit=3))
    assert capped
    assert expand(Glob(tmp_path, (".json",)))[0] == [tmp_path / "x.json"]
    assert expand(Glob(tmp_path / "missing", (".json",))) == ([], False)


def test_client_paths_reads_no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """os.environ is never consulted: only the env passed in counts."""
    monkeypatch.setenv("XDG_CONFIG_HOME", "/real")
    monkeypatch.setenv("CODEX_HOME", "/real")
    assert _paths("goose", "Linux")[0] == Path("/h/me/.config/goose/config.yaml")
    assert _paths("codex", "Linux")[0] == Path("/h/me/.codex/config.toml")
