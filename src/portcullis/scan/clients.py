"""Where each MCP client keeps its configuration, per operating system and scope.

This module is the table of clients and nothing else: it builds candidate paths from a home
directory and an environment passed in (never the real machine's), so every OS layout can be
tested on one. Whether a candidate exists is :mod:`portcullis.scan.discover`'s business.

Each location carries its documentation source as a comment; ``(unverified)`` marks a location
taken from a secondary source that the client's own documentation does not state.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from portcullis.scan.model import Format, Scope

__all__ = [
    "CLIENTS",
    "Candidate",
    "Client",
    "Context",
    "Glob",
    "Shape",
    "candidates",
    "client_paths",
    "expand",
    "fmt_of_shape",
    "project_dirs",
]

Shape = str
"""How a file lays out its servers; see :mod:`portcullis.scan.entries` for the list."""

# Editors built on VS Code, whose ``User`` folder hosts Cline's and Roo's globalStorage.
_VSCODE_FAMILY = ("Code", "Code - Insiders", "Cursor", "Windsurf", "VSCodium")


@dataclass(frozen=True)
class Context:
    """What paths are built from: the home directory, the project, the environment, the OS."""

    home: Path
    cwd: Path | None
    env: Mapping[str, str]
    system: str

    def var(self, name: str) -> Path | None:
        """An environment variable as a path, when set and non-empty."""
        value = self.env.get(name, "")
        return Path(value) if value else None

    @property
    def profile(self) -> Path:
        """``%USERPROFILE%`` on Windows, the home directory elsewhere."""
        if self.system == "Windows":
            return self.var("USERPROFILE") or self.home
        return self.home

    @property
    def appdata(self) -> Path:
        """Per-user application data: Roaming AppData, Application Support or XDG config."""
        if self.system == "Windows":
            return self.var("APPDATA") or self.profile / "AppData" / "Roaming"
        if self.system == "Darwin":
            return self.home / "Library" / "Application Support"
        return self.xdg_config

    @property
    def xdg_config(self) -> Path:
        """``$XDG_CONFIG_HOME`` or ``~/.config`` (also used on macOS by Zed, Goose, OpenCode)."""
        return self.var("XDG_CONFIG_HOME") or self.home / ".config"

    def system_dir(self, linux: str, darwin: str, windows_var: str, *windows: str) -> Path | None:
        """A machine-wide directory; on Windows only when the variable naming its root is set."""
        if self.system == "Windows":
            root = self.var(windows_var)
            return root.joinpath(*windows) if root else None
        return Path(darwin if self.system == "Darwin" else linux)


@dataclass(frozen=True)
class Glob:
    """Files directly inside ``directory`` (or one level deeper with ``nested``) by suffix."""

    directory: Path
    suffixes: tuple[str, ...]
    name: str | None = None
    """When set, only files of this exact name (``nested`` then looks one level down)."""
    nested: int = 0
    """How many directory levels below ``directory`` to look."""
    limit: int = 200
    """Directory entries to look at before giving up (reported, never silently)."""


@dataclass(frozen=True)
class Candidate:
    """One place a client may keep configuration, with what to expect there."""

    client: str
    scope: Scope
    path: Path | Glob
    shape: Shape
    project: str | None = None
    """The project directory a project- or local-scope file belongs to."""

    @property
    def format(self) -> Format:
        """The file format implied by the shape."""
        return fmt_of_shape(self.shape)


def fmt_of_shape(shape: Shape) -> Format:
    """The format a shape is written in (Continue's blocks decide per file, by suffix)."""
    if shape == "codex":
        return "toml"
    if shape in ("goose", "continue"):
        return "yaml"
    return "json"


@dataclass(frozen=True)
class Client:
    """A client: its id, display name, and a function listing its candidate locations."""

    id: str
    name: str
    locations: Callable[[Context], Iterator[Candidate]]


def project_dirs(ctx: Context) -> list[Path]:
    """``cwd`` and its ancestors up to home (nearest first); just ``cwd`` outside home.

    Home itself is included: a client started there treats it as the project (a
    ``~/.mcp.json`` is loaded). Where a project file is also a user file (``~/.gemini``),
    discovery reads it once, as the user file listed first.
    """
    if ctx.cwd is None:
        return []
    out: list[Path] = []
    here = ctx.cwd
    for _ in range(64):
        out.append(here)
        if here == ctx.home or here.parent == here or ctx.home not in here.parents:
            break
        here = here.parent
    return out


def _project(
    ctx: Context, client: str, rel: str, shape: Shape, scope: Scope = "project"
) -> Iterator[Candidate]:
    for d in project_dirs(ctx):
        yield Candidate(client, scope, d / rel, shape, project=str(d))


def _user(client: str, path: Path | Glob, shape: Shape = "mcpServers") -> Candidate:
    return Candidate(client, "user", path, shape)


# --- Claude -------------------------------------------------------------------------------


def _claude_desktop(ctx: Context) -> Iterator[Candidate]:
    # https://modelcontextprotocol.io/quickstart/user: macOS Application Support, Windows
    # %APPDATA%\Claude. Linux has no official app; unofficial builds use ~/.config/Claude
    # (unverified).
    yield _user("claude-desktop", ctx.appdata / "Claude" / "claude_desktop_config.json")


def _claude_dir(ctx: Context) -> Path:
    # https://code.claude.com/docs/en/settings: CLAUDE_CONFIG_DIR relocates ~/.claude, and
    # ~/.claude.json with it (as $CLAUDE_CONFIG_DIR/.claude.json).
    return ctx.var("CLAUDE_CONFIG_DIR") or ctx.home / ".claude"


def _claude_managed(ctx: Context) -> Path | None:
    # https://code.claude.com/docs/en/settings (managed settings) and .../docs/en/mcp
    # (managed-mcp.json): /Library/Application Support/ClaudeCode, /etc/claude-code,
    # C:\Program Files\ClaudeCode.
    return ctx.system_dir(
        "/etc/claude-code", "/Library/Application Support/ClaudeCode", "ProgramFiles", "ClaudeCode"
    )


def _claude_code(ctx: Context) -> Iterator[Candidate]:
    config_dir = ctx.var("CLAUDE_CONFIG_DIR")
    state = config_dir / ".claude.json" if config_dir else ctx.home / ".claude.json"
    # https://code.claude.com/docs/en/mcp#mcp-installation-scopes: user scope is the top-level
    # mcpServers of ~/.claude.json, local scope is projects["<abs path>"].mcpServers there.
    yield Candidate("claude-code", "user", state, "claude-json")
    # https://code.claude.com/docs/en/settings#settings-files: user, project, local settings.
    yield Candidate("claude-code", "user", _claude_dir(ctx) / "settings.json", "claude-settings")
    for d in project_dirs(ctx):
        # Project scope: .mcp.json at the project root (docs: "mcp-installation-scopes").
        yield Candidate("claude-code", "project", d / ".mcp.json", "mcpServers", str(d))
        yield Candidate(
            "claude-code", "project", d / ".claude" / "settings.json", "claude-settings", str(d)
        )
        yield Candidate(
            "claude-code", "local", d / ".claude" / "settings.local.json", "claude-settings", str(d)
        )
    managed_dirs = [_claude_managed(ctx)]
    if ctx.system == "Windows":
        # Before December 2025 the docs named C:\ProgramData\ClaudeCode; machines deployed then
        # may still carry files there.
        legacy = ctx.var("ProgramData")
        managed_dirs.append(legacy / "ClaudeCode" if legacy else None)
    for managed in managed_dirs:
        if managed is None:
            continue
        yield Candidate("claude-code", "managed", managed / "managed-mcp.json", "mcpServers")
        yield Candidate(
            "claude-code", "managed", managed / "managed-settings.json", "claude-settings"
        )
    # https://code.claude.com/docs/en/plugins-reference#mcp-servers: a plugin's .mcp.json at its
    # root; installed plugins are cached under ~/.claude/plugins (layout below it varies).
    # Plugin trees hold many files (commands, agents), hence the higher limit.
    plugins = Glob(_claude_dir(ctx) / "plugins", (".json",), ".mcp.json", nested=4, limit=5000)
    yield Candidate("claude-code", "plugin", plugins, "mcpServers")


# --- Editors ------------------------------------------------------------------------------


def _cursor(ctx: Context) -> Iterator[Candidate]:
    # https://docs.cursor.com/context/model-context-protocol: ~/.cursor/mcp.json (global) and
    # <project>/.cursor/mcp.json.
    yield _user("cursor", ctx.profile / ".cursor" / "mcp.json")
    yield from _project(ctx, "cursor", ".cursor/mcp.json", "mcpServers")


def _windsurf(ctx: Context) -> Iterator[Candidate]:
    # https://docs.windsurf.com/windsurf/cascade/mcp: ~/.codeium/windsurf/mcp_config.json;
    # remote servers use "serverUrl".
    yield _user("windsurf", ctx.profile / ".codeium" / "windsurf" / "mcp_config.json")


def _vscode_user(ctx: Context, app: str) -> Path:
    # https://code.visualstudio.com/docs/configure/settings#_settings-file-locations
    return ctx.appdata / app / "User"


def _vscode(client: str, app: str) -> Callable[[Context], Iterator[Candidate]]:
    def locations(ctx: Context) -> Iterator[Candidate]:
        user = _vscode_user(ctx, app)
        # https://code.visualstudio.com/docs/copilot/reference/mcp-configuration: user mcp.json
        # (top-level "servers" and "inputs"), one per profile, and the workspace .vscode/mcp.json.
        yield _user(client, user / "mcp.json", "servers")
        # Before mcp.json, servers lived in settings.json under "mcp": {"servers": …}; the
        # settings file also holds chat.tools.autoApprove and chat.mcp.* settings.
        yield _user(client, user / "settings.json", "vscode-settings")
        yield _user(client, Glob(user / "profiles", (".json",), "mcp.json", nested=1), "servers")
        if client == "vscode":
            # One workspace folder serves both editions; attribute it to VS Code once.
            yield from _project(ctx, client, ".vscode/mcp.json", "servers")
            yield from _project(ctx, client, ".vscode/settings.json", "vscode-settings")
            # https://code.visualstudio.com/docs/devcontainers/containers (customizations.vscode
            # "mcp" servers, per the MCP configuration reference).
            yield from _project(ctx, client, ".devcontainer/devcontainer.json", "devcontainer")
            yield from _project(ctx, client, ".devcontainer.json", "devcontainer")

    return locations


def _extension(client: str, ext_id: str, filename: str) -> Callable[[Context], Iterator[Candidate]]:
    def locations(ctx: Context) -> Iterator[Candidate]:
        # The extension's globalStorage under every VS Code-family editor it may be installed in
        # (Cline: https://docs.cline.bot/mcp/configuring-mcp-servers; Roo:
        # https://docs.roocode.com/features/mcp/using-mcp-in-roo).
        for app in _VSCODE_FAMILY:
            path = _vscode_user(ctx, app) / "globalStorage" / ext_id / "settings" / filename
            yield _user(client, path)
        if client == "roo":
            # Roo's project-level file, documented on the same page.
            yield from _project(ctx, "roo", ".roo/mcp.json", "mcpServers")

    return locations


def _zed(ctx: Context) -> Iterator[Candidate]:
    # https://zed.dev/docs/configuring-zed#settings-files: ~/.config/zed/settings.json on macOS
    # and Linux (XDG_CONFIG_HOME honoured), %APPDATA%\Zed\settings.json on Windows; project
    # .zed/settings.json. Servers under "context_servers" (https://zed.dev/docs/ai/mcp).
    user = ctx.appdata / "Zed" if ctx.system == "Windows" else ctx.xdg_config / "zed"
    yield _user("zed", user / "settings.json", "context_servers")
    yield from _project(ctx, "zed", ".zed/settings.json", "context_servers")


def _continue(ctx: Context) -> Iterator[Candidate]:
    # https://docs.continue.dev/customize/deep-dives/mcp: mcpServers (a list) in
    # ~/.continue/config.yaml, and block files in .continue/mcpServers/ (YAML, or JSON copied
    # from Claude/Cursor). config.json is the deprecated JSON config.
    root = ctx.profile / ".continue"
    yield _user("continue", root / "config.yaml", "continue")
    yield _user("continue", root / "config.json", "continue")
    blocks = (".yaml", ".yml", ".json")
    yield _user("continue", Glob(root / "mcpServers", blocks), "continue")
    for d in project_dirs(ctx):
        glob = Glob(d / ".continue" / "mcpServers", blocks)
        yield Candidate("continue", "project", glob, "continue", str(d))


def _junie(ctx: Context) -> Iterator[Candidate]:
    # https://www.jetbrains.com/help/junie/model-context-protocol-mcp.html: ~/.junie/mcp/mcp.json
    # (user) and <project>/.junie/mcp/mcp.json (unverified: the page shows the settings UI).
    yield _user("junie", ctx.profile / ".junie" / "mcp" / "mcp.json")
    yield from _project(ctx, "junie", ".junie/mcp/mcp.json", "mcpServers")


# --- Command-line agents ------------------------------------------------------------------


def _gemini(ctx: Context) -> Iterator[Candidate]:
    # https://geminicli.com/docs/get-started/configuration: ~/.gemini/settings.json, project
    # .gemini/settings.json, system settings at /etc/gemini-cli, /Library/Application
    # Support/GeminiCli, C:\ProgramData\gemini-cli (GEMINI_CLI_SYSTEM_SETTINGS_PATH overrides).
    yield _user("gemini", ctx.profile / ".gemini" / "settings.json")
    yield from _project(ctx, "gemini", ".gemini/settings.json", "mcpServers")
    # Extensions bundle servers in gemini-extension.json (docs: extensions).
    ext = Glob(ctx.profile / ".gemini" / "extensions", (".json",), "gemini-extension.json", 1)
    yield Candidate("gemini", "plugin", ext, "mcpServers")
    override = ctx.var("GEMINI_CLI_SYSTEM_SETTINGS_PATH")
    system = ctx.system_dir(
        "/etc/gemini-cli", "/Library/Application Support/GeminiCli", "ProgramData", "gemini-cli"
    )
    if override is not None:
        yield Candidate("gemini", "managed", override, "mcpServers")
    elif system is not None:
        yield Candidate("gemini", "managed", system / "settings.json", "mcpServers")
    if system is not None:
        yield Candidate("gemini", "managed", system / "system-defaults.json", "mcpServers")


def _antigravity(ctx: Context) -> Iterator[Candidate]:
    # ~/.gemini/antigravity/mcp_config.json (unverified; from snyk/agent-scan's discoverer).
    yield _user("antigravity", ctx.profile / ".gemini" / "antigravity" / "mcp_config.json")


def _codex(ctx: Context) -> Iterator[Candidate]:
    # https://developers.openai.com/codex/config-basic: $CODEX_HOME/config.toml (default
    # ~/.codex) with [mcp_servers.<name>] tables; project .codex/config.toml from the project
    # root down to cwd (loaded for trusted projects only; scanned regardless, since trust can be
    # granted later); /etc/codex/config.toml on Unix. Windows system path unverified.
    home = ctx.var("CODEX_HOME") or ctx.profile / ".codex"
    yield Candidate("codex", "user", home / "config.toml", "codex")
    yield from _project(ctx, "codex", ".codex/config.toml", "codex")
    system = ctx.system_dir("/etc/codex", "/etc/codex", "ProgramData", "OpenAI", "Codex")
    if system is not None:
        yield Candidate("codex", "managed", system / "config.toml", "codex")


def _goose(ctx: Context) -> Iterator[Candidate]:
    # https://block.github.io/goose/docs/guides/config-files: ~/.config/goose/config.yaml on
    # macOS and Linux, %APPDATA%\Block\goose\config\config.yaml on Windows; "extensions".
    if ctx.system == "Windows":
        path = ctx.appdata / "Block" / "goose" / "config" / "config.yaml"
    else:
        path = ctx.xdg_config / "goose" / "config.yaml"
    yield Candidate("goose", "user", path, "goose")


def _opencode(ctx: Context) -> Iterator[Candidate]:
    # https://opencode.ai/docs/config: global ~/.config/opencode/opencode.json (all OSes),
    # OPENCODE_CONFIG for a custom file, project opencode.json and .opencode/; managed
    # /etc/opencode, /Library/Application Support/opencode, %ProgramData%\opencode. Servers under
    # "mcp" (https://opencode.ai/docs/mcp-servers).
    custom = ctx.var("OPENCODE_CONFIG")
    if custom is not None:
        yield Candidate("opencode", "user", custom, "opencode")
    for name in ("opencode.json", "opencode.jsonc"):
        yield Candidate("opencode", "user", ctx.xdg_config / "opencode" / name, "opencode")
    for d in project_dirs(ctx):
        for rel in ("opencode.json", "opencode.jsonc", ".opencode/opencode.json"):
            yield Candidate("opencode", "project", d / rel, "opencode", str(d))
    managed = ctx.system_dir(
        "/etc/opencode", "/Library/Application Support/opencode", "ProgramData", "opencode"
    )
    if managed is not None:
        for name in ("opencode.json", "opencode.jsonc"):
            yield Candidate("opencode", "managed", managed / name, "opencode")


def _copilot(ctx: Context) -> Iterator[Candidate]:
    # GitHub Copilot CLI: $COPILOT_HOME/mcp-config.json, else ~/.copilot/mcp-config.json
    # (https://docs.github.com/en/copilot/how-tos/use-copilot-agents/use-copilot-cli).
    root = ctx.var("COPILOT_HOME") or ctx.profile / ".copilot"
    yield _user("copilot-cli", root / "mcp-config.json")


def _amazonq(ctx: Context) -> Iterator[Candidate]:
    # https://docs.aws.amazon.com/amazonq/latest/qdeveloper-ug/qdev-mcp.html: global
    # ~/.aws/amazonq/mcp.json (legacy), workspace .amazonq/mcp.json; agents (IDE default agent,
    # CLI agents) carry their own "mcpServers".
    root = ctx.profile / ".aws" / "amazonq"
    yield _user("amazonq", root / "mcp.json")
    yield _user("amazonq", root / "agents" / "default.json")
    yield _user("amazonq", Glob(root / "cli-agents", (".json",)))
    for d in project_dirs(ctx):
        yield Candidate("amazonq", "project", d / ".amazonq" / "mcp.json", "mcpServers", str(d))
        agents = Glob(d / ".amazonq" / "cli-agents", (".json",))
        yield Candidate("amazonq", "project", agents, "mcpServers", str(d))


def _kiro(ctx: Context) -> Iterator[Candidate]:
    # https://kiro.dev/docs/mcp/configuration/: ~/.kiro/settings/mcp.json and workspace
    # .kiro/settings/mcp.json.
    yield _user("kiro", ctx.profile / ".kiro" / "settings" / "mcp.json")
    yield from _project(ctx, "kiro", ".kiro/settings/mcp.json", "mcpServers")


def _lmstudio(ctx: Context) -> Iterator[Candidate]:
    # https://lmstudio.ai/docs/app/mcp: ~/.lmstudio/mcp.json ("Cursor notation").
    yield _user("lmstudio", ctx.profile / ".lmstudio" / "mcp.json")


CLIENTS: dict[str, Client] = {
    c.id: c
    for c in (
        Client("claude-code", "Claude Code", _claude_code),
        Client("claude-desktop", "Claude Desktop", _claude_desktop),
        Client("cursor", "Cursor", _cursor),
        Client("windsurf", "Windsurf", _windsurf),
        Client("vscode", "VS Code", _vscode("vscode", "Code")),
        Client(
            "vscode-insiders", "VS Code Insiders", _vscode("vscode-insiders", "Code - Insiders")
        ),
        Client(
            "cline",
            "Cline",
            _extension("cline", "saoudrizwan.claude-dev", "cline_mcp_settings.json"),
        ),
        Client(
            "roo", "Roo Code", _extension("roo", "rooveterinaryinc.roo-cline", "mcp_settings.json")
        ),
        Client("continue", "Continue", _continue),
        Client("zed", "Zed", _zed),
        Client("gemini", "Gemini CLI", _gemini),
        Client("codex", "Codex CLI", _codex),
        Client("goose", "Goose", _goose),
        Client("opencode", "OpenCode", _opencode),
        Client("lmstudio", "LM Studio", _lmstudio),
        Client("amazonq", "Amazon Q Developer", _amazonq),
        Client("kiro", "Kiro", _kiro),
        Client("junie", "Junie (JetBrains)", _junie),
        Client("copilot-cli", "GitHub Copilot CLI", _copilot),
        Client("antigravity", "Antigravity", _antigravity),
    )
}
"""Every known client by id, in discovery order."""


def candidates(client: str, ctx: Context) -> list[Candidate]:
    """The candidate locations of ``client`` (user, project nearest first, managed, plugin)."""
    try:
        entry = CLIENTS[client]
    except KeyError:
        raise ValueError(f"unknown client {client!r}; known: {', '.join(CLIENTS)}") from None
    return list(entry.locations(ctx))


def expand(glob: Glob) -> tuple[list[Path], bool]:
    """The files a :class:`Glob` matches, sorted, and whether the listing hit its limit.

    Symlinked directories are not followed (a link out of home must not widen the scan);
    unreadable or missing directories match nothing.
    """
    found: list[Path] = []
    seen = 0
    capped = False
    stack: list[tuple[str, int]] = [(os.fspath(glob.directory), 0)]
    while stack:
        directory, depth = stack.pop()
        try:
            with os.scandir(directory) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError:
            continue
        for entry in entries:
            seen += 1
            if seen > glob.limit:
                capped = True
                stack.clear()
                break
            try:
                is_dir = entry.is_dir(follow_symlinks=False)
            except OSError:
                continue
            if is_dir:
                if depth < glob.nested:
                    stack.append((entry.path, depth + 1))
                continue
            if glob.name is not None:
                if entry.name == glob.name:
                    found.append(Path(entry.path))
            elif entry.name.endswith(glob.suffixes) and not entry.name.startswith("."):
                found.append(Path(entry.path))
    return sorted(found), capped


def client_paths(
    client: str, *, home: Path, cwd: Path | None, env: Mapping[str, str], system: str
) -> list[Path]:
    """Candidate files of ``client``: user, project (``cwd`` up to home), managed, plugin.

    Paths are built from ``home`` and ``env`` (``APPDATA``, ``USERPROFILE``,
    ``XDG_CONFIG_HOME``, ``CLAUDE_CONFIG_DIR``, ``CODEX_HOME``, ``COPILOT_HOME``,
    ``OPENCODE_CONFIG``, ``ProgramData``, ``ProgramFiles``) for ``system`` (as
    ``platform.system()``), never from the running machine. Directory listings (VS Code
    profiles, plugins, block folders) are expanded from the filesystem; fixed paths are
    returned whether or not they exist.
    """
    ctx = Context(home, cwd, env, system)
    out: dict[Path, None] = {}
    for cand in candidates(client, ctx):
        paths = expand(cand.path)[0] if isinstance(cand.path, Glob) else [cand.path]
        out.update(dict.fromkeys(paths))
    return list(out)
