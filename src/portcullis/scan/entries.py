"""Normalise each client's way of writing servers into :class:`~portcullis.scan.model.Server`.

Pure: takes a parsed :class:`~portcullis.scan.parse.Document` and returns servers, settings
and the problems found, with the real line of every value the checks may point at.

Shapes (where a file keeps its servers):

``mcpServers``       top-level ``mcpServers`` map (Claude Desktop, Cursor, Windsurf, Cline, Roo,
                     Gemini, Kiro, Junie, Amazon Q, LM Studio, Copilot CLI, ``.mcp.json``)
``claude-json``      ``~/.claude.json``: ``mcpServers`` (user) and ``projects[dir].mcpServers``
``claude-settings``  Claude Code ``settings*.json``: settings only
``servers``          VS Code ``mcp.json``: top-level ``servers``
``vscode-settings``  VS Code ``settings.json``: ``mcp.servers`` and ``chat.*`` settings
``devcontainer``     ``customizations.vscode.mcp.servers``
``context_servers``  Zed
``codex``            TOML ``[mcp_servers.NAME]`` plus ``approval_policy``
``goose``            YAML ``extensions`` with ``cmd``/``envs``/``uri``
``opencode``         ``mcp.NAME`` with ``command`` as an array and ``environment``
``continue``         YAML ``mcpServers`` list (or a Claude-style map in a block file)
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from portcullis.scan.model import ScanError, Scope, Server, Setting, Transport
from portcullis.scan.parse import Document, escape, pointer

__all__ = ["Extracted", "extract", "guess_shape"]

_TRANSPORTS: dict[str, Transport] = {
    "stdio": "stdio",
    "local": "stdio",
    "sse": "sse",
    "http": "http",
    "streamable-http": "http",
    "streamable_http": "http",
    "streamablehttp": "http",
    "streamable": "http",
    "remote": "http",
}
# Goose extensions that run inside Goose itself: no process or URL to scan.
_IN_PROCESS = frozenset({"builtin", "platform", "frontend", "inline_python"})

_CLAUDE_SETTINGS = (
    "enableAllProjectMcpServers",
    "enabledMcpjsonServers",
    "disabledMcpjsonServers",
    "allowedMcpServers",
    "deniedMcpServers",
)
# https://code.visualstudio.com/docs/copilot/reference/copilot-settings (auto-approval and the
# discovery of other clients' MCP configs).
_VSCODE_SETTINGS = (
    "chat.tools.autoApprove",
    "chat.tools.global.autoApprove",
    "chat.mcp.autoStart",
    "chat.mcp.discovery.enabled",
    "chat.mcp.access",
    "chat.mcp.enabled",
)
_CODEX_SETTINGS = ("approval_policy", "sandbox_mode")


@dataclass
class Extracted:
    """What one file yields: its servers, the settings that matter, and what was wrong."""

    servers: list[Server] = field(default_factory=list)
    settings: list[Setting] = field(default_factory=list)
    errors: list[ScanError] = field(default_factory=list)


@dataclass(frozen=True)
class _Where:
    doc: Document
    path: Path
    client: str
    scope: Scope


def guess_shape(value: Any, fmt: str) -> str | None:
    """The shape a file's value has, from its keys; ``None`` when it has none we know."""
    if not isinstance(value, dict):
        return None
    if fmt == "toml":
        return "codex"
    if isinstance(value.get("projects"), dict) and (
        "mcpServers" in value or "numStartups" in value or "userID" in value
    ):
        return "claude-json"
    if "mcpServers" in value:
        return "continue" if isinstance(value["mcpServers"], list) else "mcpServers"
    if isinstance(value.get("servers"), dict):
        return "servers"
    mcp = value.get("mcp")
    if "mcp.servers" in value or (isinstance(mcp, dict) and isinstance(mcp.get("servers"), dict)):
        return "vscode-settings"
    if "context_servers" in value:
        return "context_servers"
    if "mcp_servers" in value:
        return "codex"
    extensions = value.get("extensions")
    if isinstance(extensions, dict) and any(
        isinstance(e, dict) and ("cmd" in e or "type" in e) for e in extensions.values()
    ):
        return "goose"
    if isinstance(mcp, dict):
        return "opencode"
    if isinstance(value.get("customizations"), dict):
        return "devcontainer"
    if any(k in value for k in _CLAUDE_SETTINGS):
        return "claude-settings"
    return None


def extract(
    doc: Document,
    *,
    shape: str,
    path: Path,
    client: str,
    scope: Scope,
    project: str | None = None,
) -> Extracted:
    """The servers and settings of ``doc`` laid out as ``shape``."""
    out = Extracted()
    where = _Where(doc, path, client, scope)
    value = doc.value
    if value is None and doc.format == "yaml":
        return out  # An empty YAML file: nothing configured.
    if not isinstance(value, dict):
        out.errors.append(_error(where, "", "the file's top level is not an object"))
        return out
    if shape == "claude-json":
        _map(out, where, value, ("mcpServers",), project=None)
        _claude_projects(out, where, value)
    elif shape == "claude-settings":
        _settings(out, where, value, _CLAUDE_SETTINGS)
    elif shape == "servers":
        _map(out, where, value, ("servers",), project=project)
    elif shape == "vscode-settings":
        if "mcp.servers" in value:
            _map(out, where, value, ("mcp.servers",), project=project)
        else:
            _map(out, where, value, ("mcp", "servers"), project=project)
        _settings(out, where, value, _VSCODE_SETTINGS)
    elif shape == "devcontainer":
        _map(out, where, value, ("customizations", "vscode", "mcp", "servers"), project=project)
    elif shape == "context_servers":
        _map(out, where, value, ("context_servers",), project=project)
    elif shape == "codex":
        _map(out, where, value, ("mcp_servers",), project=project)
        _codex_settings(out, where, value)
    elif shape == "goose":
        _map(out, where, value, ("extensions",), project=project)
    elif shape == "opencode":
        _map(out, where, value, ("mcp",), project=project)
    elif shape == "continue" and isinstance(value.get("mcpServers"), list):
        _list(out, where, value["mcpServers"], project)
    else:
        _map(out, where, value, ("mcpServers",), project=project)
    return out


def _error(where: _Where, ptr: str, message: str, server: str | None = None) -> ScanError:
    return ScanError(
        message=message,
        file=str(where.path),
        line=where.doc.key_line(ptr),
        server=server,
        kind="config",
    )


def _map(
    out: Extracted,
    where: _Where,
    root: dict[str, Any],
    keys: tuple[str, ...],
    *,
    project: str | None,
    scope: Scope | None = None,
    base: str = "",
    disabled: frozenset[str] = frozenset(),
) -> None:
    """Servers of the map at ``keys`` under ``root`` (a missing key means none)."""
    node: Any = root
    ptr = base
    for key in keys:
        if not isinstance(node, dict) or key not in node:
            return
        node = node[key]
        ptr += "/" + escape(key)
    if node is None:
        return
    if not isinstance(node, dict):
        kind = "a list" if isinstance(node, list) else f"a {type(node).__name__}"
        out.errors.append(
            _error(where, ptr, f"{'.'.join(keys)} is {kind}, expected an object of servers")
        )
        return
    for name, entry in node.items():
        server = _entry(
            out, where, f"{ptr}/{escape(name)}", str(name), entry, project, scope or where.scope
        )
        if server is not None:
            if name in disabled:
                server.enabled = False
            out.servers.append(server)


def _list(out: Extracted, where: _Where, items: list[Any], project: str | None) -> None:
    """Continue's ``mcpServers`` list: each item names itself with ``name``."""
    for index, entry in enumerate(items):
        name = entry.get("name") if isinstance(entry, dict) else None
        label = str(name) if isinstance(name, (str, int)) and name != "" else str(index)
        server = _entry(out, where, pointer("mcpServers", index), label, entry, project, None)
        if server is not None:
            out.servers.append(server)


def _claude_projects(out: Extracted, where: _Where, value: dict[str, Any]) -> None:
    projects = value.get("projects")
    if projects is None:
        return
    if not isinstance(projects, dict):
        out.errors.append(_error(where, "/projects", "projects is not an object"))
        return
    for directory, entry in projects.items():
        base = pointer("projects", directory)
        if not isinstance(entry, dict):
            continue  # Not ours to judge: Claude Code keeps other per-project state here.
        raw_disabled = entry.get("disabledMcpServers")
        disabled = frozenset(
            d
            for d in (raw_disabled if isinstance(raw_disabled, list) else [])
            if isinstance(d, str)
        )
        _map(
            out,
            where,
            entry,
            ("mcpServers",),
            project=directory,
            scope="local",
            base=base,
            disabled=disabled,
        )
        for key in (
            "enableAllProjectMcpServers",
            "enabledMcpjsonServers",
            "disabledMcpjsonServers",
        ):
            if key in entry:
                ptr = f"{base}/{key}"
                out.settings.append(Setting(key, entry[key], ptr, where.doc.key_line(ptr)))


def _settings(
    out: Extracted, where: _Where, value: dict[str, Any], keys: tuple[str, ...], base: str = ""
) -> None:
    for key in keys:
        if key in value:
            ptr = f"{base}/{escape(key)}"
            out.settings.append(Setting(key, value[key], ptr, where.doc.key_line(ptr)))


def _codex_settings(out: Extracted, where: _Where, value: dict[str, Any]) -> None:
    _settings(out, where, value, _CODEX_SETTINGS)
    profiles = value.get("profiles")
    if not isinstance(profiles, dict):
        return
    for name, profile in profiles.items():
        if not isinstance(profile, dict):
            continue
        for key in _CODEX_SETTINGS:
            if key in profile:
                ptr = pointer("profiles", name, key)
                line = where.doc.key_line(ptr)
                out.settings.append(Setting(f"profiles.{name}.{key}", profile[key], ptr, line))


# --- one entry ----------------------------------------------------------------------------


def _scalar(value: Any) -> str | None:
    """A scalar as the client would pass it to a process; ``None`` for anything else."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value)
    return None


class _Entry:
    """Builds one :class:`Server`, recording the line of each normalised pointer."""

    def __init__(self, out: Extracted, where: _Where, ptr: str, name: str) -> None:
        self.out = out
        self.where = where
        self.ptr = ptr
        self.name = name
        self.positions: dict[str, int] = {}

    def line(self, rel: str) -> int:
        return self.where.doc.key_line(self.ptr + rel)

    def at(self, normalised: str, written: str) -> None:
        self.positions[normalised] = self.line(written)

    def problem(self, rel: str, message: str) -> None:
        self.out.errors.append(_error(self.where, self.ptr + rel, message, self.name))

    def strings(self, value: Any, written: str, normalised: str | None) -> list[str]:
        """A list of scalars as strings; others are reported and kept as JSON text."""
        if not isinstance(value, list):
            self.problem(written, f"{written.lstrip('/')} is not a list")
            return []
        if normalised is not None:
            self.at(normalised, written)
        out: list[str] = []
        for k, item in enumerate(value):
            text = _scalar(item)
            if text is None:
                self.problem(f"{written}/{k}", f"{written.lstrip('/')}[{k}] is not a string")
                # Keep the index so /args/N still lines up with what the client runs.
                text = json.dumps(item)
            out.append(text)
            if normalised is not None:
                self.at(f"{normalised}/{k}", f"{written}/{k}")
        return out

    def table(self, value: Any, written: str, normalised: str) -> dict[str, str]:
        """A map of scalars as strings (env, headers); others are reported and left out."""
        if not isinstance(value, Mapping):
            if value is not None:
                self.problem(written, f"{written.lstrip('/')} is not an object")
            return {}
        self.at(normalised, written)
        out: dict[str, str] = {}
        for key, item in value.items():
            rel = f"{written}/{escape(str(key))}"
            text = _scalar(item)
            if text is None:
                self.problem(rel, f"{written.lstrip('/')}.{key} is not a string")
                continue
            out[str(key)] = text
            self.at(f"{normalised}/{escape(str(key))}", rel)
        return out


def _entry(
    out: Extracted,
    where: _Where,
    ptr: str,
    name: str,
    entry: Any,
    project: str | None,
    scope: Scope | None,
) -> Server | None:
    if not isinstance(entry, dict):
        out.errors.append(_error(where, ptr, f"server {name!r} is not an object", name))
        return None
    kind = entry.get("type", entry.get("transport"))
    kind = kind.lower() if isinstance(kind, str) else None
    if kind in _IN_PROCESS:
        return None
    e = _Entry(out, where, ptr, name)
    # Every key as written, so a check pointing at a client-specific key finds its line.
    for key in entry:
        rel = "/" + escape(str(key))
        e.positions[rel] = e.line(rel)
    e.positions[""] = e.line("")

    command: str | None = None
    args: list[str] = []
    env: dict[str, str] = {}
    cmd_key = "command" if "command" in entry else "cmd" if "cmd" in entry else None
    if cmd_key is not None:
        raw_cmd = entry[cmd_key]
        if isinstance(raw_cmd, list):
            # OpenCode: "command": ["npx", "-y", "pkg"] is the program and its arguments.
            parts = e.strings(raw_cmd, f"/{cmd_key}", None)
            if parts:
                command = parts[0]
                e.at("/command", f"/{cmd_key}/0")
                args = parts[1:]
                if args:
                    e.at("/args", f"/{cmd_key}/1")
                for k in range(len(args)):
                    e.at(f"/args/{k}", f"/{cmd_key}/{k + 1}")
        elif isinstance(raw_cmd, dict):
            # Zed's older form: "command": {"path", "args", "env"}.
            command = _scalar(raw_cmd.get("path"))
            e.at("/command", f"/{cmd_key}/path")
            if "args" in raw_cmd:
                args = e.strings(raw_cmd["args"], f"/{cmd_key}/args", "/args")
            if "env" in raw_cmd:
                env = e.table(raw_cmd["env"], f"/{cmd_key}/env", "/env")
        else:
            command = _scalar(raw_cmd)
            if command is None and raw_cmd is not None:
                e.problem(f"/{cmd_key}", f"{cmd_key} is not a string")
            e.at("/command", f"/{cmd_key}")
    if "args" in entry and entry["args"] is not None:
        args = args + e.strings(entry["args"], "/args", "/args")
    for env_key in ("env", "envs", "environment"):
        if env_key in entry:
            env.update(e.table(entry[env_key], f"/{env_key}", "/env"))

    url: str | None = None
    url_key = next((k for k in ("url", "serverUrl", "httpUrl", "uri") if k in entry), None)
    if url_key is not None:
        url = _scalar(entry[url_key])
        if url is None and entry[url_key] is not None:
            e.problem(f"/{url_key}", f"{url_key} is not a string")
        e.at("/url", f"/{url_key}")
    headers: dict[str, str] = {}
    for header_key in ("headers", "http_headers"):
        if header_key in entry:
            headers.update(e.table(entry[header_key], f"/{header_key}", "/headers"))
    cwd: str | None = None
    for cwd_key in ("cwd", "workingDirectory"):
        if cwd_key in entry:
            cwd = _scalar(entry[cwd_key])
            e.at("/cwd", f"/{cwd_key}")
            break

    transport: Transport
    if kind in _TRANSPORTS and not (kind == "local" and command is None and url is not None):
        transport = _TRANSPORTS[kind]
    elif command is not None:
        transport = "stdio"
    elif url_key == "httpUrl":
        transport = "http"
    elif url is not None:
        # Gemini CLI reads a bare "url" as SSE (streamable HTTP is "httpUrl"); the others that
        # take a bare url try streamable HTTP first.
        transport = "sse" if where.client == "gemini" else "http"
    else:
        transport = "stdio"

    enabled = not (entry.get("disabled") is True or entry.get("enabled") is False)
    return Server(
        name=name,
        client=where.client,
        scope=scope or where.scope,
        file=where.path,
        pointer=ptr,
        line=e.positions[""],
        transport=transport,
        command=command,
        args=args,
        env=env,
        url=url,
        headers=headers,
        cwd=cwd,
        enabled=enabled,
        project=project,
        raw=entry,
        positions=e.positions,
    )
