"""What a scan works on and produces: config files, their servers, findings and errors.

Every other ``portcullis.scan`` module speaks in these types, so discovery, checks, vetting,
live inspection, reports and ``wrap`` can change independently.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from portcullis.detect.findings import SEVERITIES, Severity

__all__ = [
    "CHECKLIST",
    "CONTENT_KEYED",
    "SEVERITIES",
    "Checklist",
    "ConfigFile",
    "Finding",
    "Format",
    "PackageRef",
    "Rule",
    "ScanError",
    "ScanResult",
    "Scope",
    "Server",
    "Setting",
    "Severity",
    "Transport",
    "at_least",
]

Transport = Literal["stdio", "http", "sse"]
Scope = Literal["user", "project", "local", "managed", "plugin", "given"]
Format = Literal["json", "toml", "yaml"]
Checklist = Literal[
    "least-privilege",
    "no-production-credentials",
    "confirm-destructive",
    "audit-logging",
    "vetted-pinned-packages",
    "filtered-sensitive-data",
    "sandboxing",
    "regular-review",
]

# The eight-point MCP security checklist the terminal scorecard is drawn against, in order.
CHECKLIST: dict[Checklist, str] = {
    "least-privilege": "Least privilege",
    "no-production-credentials": "No production credentials",
    "confirm-destructive": "Confirmation of destructive tools",
    "audit-logging": "Audit logging",
    "vetted-pinned-packages": "Vetted, pinned packages",
    "filtered-sensitive-data": "Filtered sensitive data",
    "sandboxing": "Sandboxing",
    "regular-review": "Regular review",
}


# Findings whose evidence is what was accepted (a diff, a masked secret), not just where it is.
CONTENT_KEYED = frozenset({"definition-changed", "tools-added", "plaintext-secret"})


def at_least(severity: Severity, threshold: Severity) -> bool:
    """Whether ``severity`` is ``threshold`` or worse."""
    return SEVERITIES.index(severity) >= SEVERITIES.index(threshold)


@dataclass(frozen=True)
class Rule:
    """A scan rule: a stable id, its default severity, what it means and how to fix it."""

    id: str
    title: str
    severity: Severity
    checklist: tuple[Checklist, ...]
    help: str
    """One paragraph: why it matters and the general fix (SARIF ``help``, docs)."""


@dataclass
class Server:
    """One configured MCP server, normalised across clients, with where it was written.

    ``positions`` maps JSON pointers relative to the entry (``""`` for the entry itself,
    ``"/command"``, ``"/args/2"``, ``"/env/API_KEY"``, ``"/url"``, ``"/headers/Authorization"``)
    to 1-based lines in ``file``; use :meth:`line_at`. For clients whose format differs (Goose
    ``cmd``/``envs``, OpenCode's ``command`` array, Zed ``context_servers``) discovery maps the
    client's own keys onto these normalised pointers.
    """

    name: str
    client: str
    scope: Scope
    file: Path
    pointer: str
    """JSON pointer of the entry inside the file, e.g. ``/mcpServers/fs`` or
    ``/projects/~1home~1me~1app/mcpServers/fs`` (TOML and YAML use the same syntax)."""
    line: int
    transport: Transport
    command: str | None = None
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    url: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    cwd: str | None = None
    enabled: bool = True
    project: str | None = None
    """The project directory a project- or local-scope entry belongs to."""
    raw: dict[str, Any] = field(default_factory=dict)
    """The entry exactly as parsed (client-specific keys such as ``alwaysAllow`` live here)."""
    positions: dict[str, int] = field(default_factory=dict)

    def line_at(self, pointer: str) -> int:
        """The line of ``pointer`` (relative to the entry), else of its nearest parent."""
        while pointer:
            if pointer in self.positions:
                return self.positions[pointer]
            pointer = pointer.rpartition("/")[0]
        return self.positions.get("", self.line)


@dataclass(frozen=True)
class Setting:
    """A client setting outside any server entry that matters to the scan.

    For example ``enableAllProjectMcpServers`` in Claude Code's settings, with its line.
    """

    key: str
    value: Any
    pointer: str
    line: int


@dataclass
class ConfigFile:
    """One configuration file that was found and read."""

    path: Path
    client: str
    """Client id: ``claude-desktop``, ``claude-code``, ``cursor``, ``windsurf``, ``vscode``,
    ``vscode-insiders``, ``cline``, ``roo``, ``continue``, ``zed``, ``gemini``, ``codex``,
    ``goose``, ``opencode``, ``lmstudio``, ``amazonq``, ``kiro``, ``junie``, ``copilot-cli``,
    ``antigravity`` or ``unknown`` for a file given on the command line that matches none."""
    scope: Scope
    format: Format
    servers: list[Server] = field(default_factory=list)
    settings: list[Setting] = field(default_factory=list)
    text: str = ""
    """The file's text as read (wrap edits it; reports never print it)."""


@dataclass(frozen=True)
class ScanError:
    """Something the scan could not see: an unreadable or broken file, a failed look-up.

    Any error makes ``portcullis scan`` exit 2: a scan that could not see everything never
    looks clean.
    """

    message: str
    file: str | None = None
    line: int | None = None
    server: str | None = None
    kind: str = "config"
    """``config`` (unreadable or broken file), ``vet`` (registry), ``inspect`` (live),
    ``baseline``."""

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape of an entry of ``errors``."""
        return {
            "kind": self.kind,
            "file": self.file,
            "line": self.line,
            "server": self.server,
            "message": self.message,
        }


@dataclass(frozen=True)
class Finding:
    """One finding of the scan (the JSON contract of ``portcullis scan --format json``).

    ``evidence`` never holds a secret in the clear: checks mask what they quote.
    """

    rule: str
    severity: Severity
    message: str
    fix: str
    client: str | None = None
    file: str | None = None
    line: int | None = None
    server: str | None = None
    evidence: str = ""
    pointer: str | None = None
    """JSON pointer inside ``file`` (stable when lines move; part of the fingerprint)."""
    tool: str | None = None
    """The tool, prompt or resource a live-inspection finding is about."""
    checklist: tuple[Checklist, ...] = ()
    title: str = ""

    @classmethod
    def of(
        cls,
        rule: Rule,
        server: Server | None,
        message: str,
        *,
        fix: str | None = None,
        pointer: str = "",
        evidence: str = "",
        severity: Severity | None = None,
        tool: str | None = None,
        file: ConfigFile | None = None,
        line: int | None = None,
    ) -> Finding:
        """A finding of ``rule`` about ``server`` at ``pointer`` (relative to the entry).

        Without a server (a file-level finding such as an auto-approval setting) pass ``file``,
        an absolute ``pointer`` and ``line``.
        """
        if server is not None:
            return cls(
                rule=rule.id,
                severity=severity or rule.severity,
                message=message,
                fix=fix or rule.help,
                client=server.client,
                file=str(server.file),
                line=line or server.line_at(pointer),
                server=server.name,
                evidence=evidence,
                pointer=server.pointer + pointer,
                tool=tool,
                checklist=rule.checklist,
                title=rule.title,
            )
        return cls(
            rule=rule.id,
            severity=severity or rule.severity,
            message=message,
            fix=fix or rule.help,
            client=file.client if file else None,
            file=str(file.path) if file else None,
            line=line,
            evidence=evidence,
            pointer=pointer or None,
            tool=tool,
            checklist=rule.checklist,
            title=rule.title,
        )

    @property
    def fingerprint(self) -> str:
        """A stable id for baselines and suppressions: unchanged when lines move.

        Keyed on what the finding is about (rule, file, server, pointer, tool), never on the
        message or line, so re-wording a message does not reopen a suppressed finding. The
        rules in :data:`CONTENT_KEYED` add their evidence: accepting today's changed tool
        definition, or a test token, must not accept the next change or a rotated real secret.
        """
        parts = [self.rule, self.file or "", self.server or "", self.pointer or "", self.tool or ""]
        if self.rule in CONTENT_KEYED:
            parts.append(self.evidence)
        key = "\x1f".join(parts)
        return hashlib.sha256(key.encode()).hexdigest()[:32]

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape of an entry of ``findings``."""
        return {
            "rule": self.rule,
            "severity": self.severity,
            "client": self.client,
            "file": self.file,
            "line": self.line,
            "server": self.server,
            "message": self.message,
            "evidence": self.evidence,
            "fix": self.fix,
            "pointer": self.pointer,
            "tool": self.tool,
            "title": self.title,
            "checklist": list(self.checklist),
            "fingerprint": self.fingerprint,
        }


@dataclass(frozen=True)
class PackageRef:
    """A package a server's command runs: ``npx -y pkg@1.2.3``, ``uvx pkg==1.0``, an image."""

    ecosystem: Literal["npm", "pypi", "docker"]
    name: str
    version: str | None
    """The exact version or digest when pinned; otherwise the range, tag or ``None``."""
    pinned: bool
    """An exact version (npm ``1.2.3``, PyPI ``==1.2.3``) or an image digest ``@sha256:``."""
    spec: str
    """The argument as written."""
    pointer: str
    """Pointer relative to the server entry (``/args/1`` or ``/command``) for line lookups."""


@dataclass
class ScanResult:
    """Everything one scan produced, before formatting."""

    files: list[ConfigFile] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    errors: list[ScanError] = field(default_factory=list)
    suppressed: list[Finding] = field(default_factory=list)
    """Findings a baseline or suppression hid; reported as such, never counted."""
    inspected: list[dict[str, Any]] = field(default_factory=list)
    """Per inspected server: ``{"server", "client", "file", "tools", "prompts", "resources",
    "instructions", "changes"}`` (names and pin changes only)."""
    started: str = ""
    duration_s: float = 0.0
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def servers(self) -> list[Server]:
        """Every server of every file, in discovery order."""
        return [s for f in self.files for s in f.servers]

    def exit_code(self, fail_on: Severity) -> int:
        """0 clean, 1 findings at or above ``fail_on``, 2 when anything could not be scanned."""
        if self.errors:
            return 2
        return 1 if any(at_least(f.severity, fail_on) for f in self.findings) else 0
