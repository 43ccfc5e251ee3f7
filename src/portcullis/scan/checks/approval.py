"""Auto-approval: settings and entries that let tools run with nobody asked.

Confirmation is the last human check before a destructive tool call. These switch it off:
Claude Code's ``enableAllProjectMcpServers`` (any cloned repo's ``.mcp.json`` starts without a
prompt), Cline/Roo ``alwaysAllow`` and Cursor/Windsurf ``autoApprove`` tool lists, Gemini's
per-server ``trust: true``, Codex's ``approval_policy = "never"`` and VS Code's tool
auto-approval. Keys are matched case-sensitively, as the clients read them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from shlex import quote
from typing import Any

from portcullis.scan.model import ConfigFile, Finding, Rule, Server, Severity

__all__ = ["AUTO_APPROVE_PROJECT_SERVERS", "AUTO_APPROVE_TOOLS", "RULES", "check", "check_file"]

AUTO_APPROVE_PROJECT_SERVERS = Rule(
    id="auto-approve-project-servers",
    title="Project MCP servers are enabled without asking",
    severity="high",
    checklist=("confirm-destructive", "vetted-pinned-packages"),
    help=(
        "enableAllProjectMcpServers: true starts every server named in any project's .mcp.json "
        "without a prompt, so cloning a repository is enough to run its commands on your "
        "machine. Remove the setting and approve project servers one by one "
        '("enabledMcpjsonServers": ["name"]).'
    ),
)
AUTO_APPROVE_TOOLS = Rule(
    id="auto-approve-tools",
    title="Tool calls are approved automatically",
    severity="medium",
    checklist=("confirm-destructive",),
    help=(
        "Auto-approved tools run on the model's word alone: a prompt injection in a web page, "
        "issue or file can then write, delete or execute without anyone seeing it. Keep "
        "auto-approval to read-only tools, or let Portcullis ask: wrap the server and list the "
        "writing tools under tools.confirm in the policy."
    ),
)
RULES = (AUTO_APPROVE_PROJECT_SERVERS, AUTO_APPROVE_TOOLS)

# Tool names that change things; auto-approving one of these is the dangerous case.
_WRITE_WORDS = frozenset(
    {"write", "edit", "delete", "del", "remove", "rm", "exec", "execute", "run", "shell"}
    | {"command", "cmd", "bash", "terminal", "eval", "create", "update", "insert", "upsert"}
    | {"drop", "truncate", "alter", "move", "mv", "rename", "push", "commit", "merge", "deploy"}
    | {"publish", "send", "post", "put", "patch", "kill", "install", "apply", "set", "modify"}
    | {"transfer", "pay", "purchase", "approve", "grant", "invoke", "script", "sql"}
)
_WORD = re.compile(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])")


def _words(tool: str) -> set[str]:
    return {w.lower() for w in _WORD.findall(tool)}


_LIST_KEYS = ("alwaysAllow", "autoApprove")


def _risky(tools: list[str]) -> list[str]:
    return [t for t in tools if t.strip() in ("*", "all", "**") or _words(t) & _WRITE_WORDS]


def _esc(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def check(server: Server) -> Iterable[Finding]:
    """Flag per-server auto-approval lists and Gemini ``trust``."""
    out: list[Finding] = []
    for key in _LIST_KEYS:
        value: Any = server.raw.get(key)
        if value is True:
            value = ["*"]
        if not isinstance(value, list) or not value:
            continue
        tools = [str(t) for t in value]
        risky = _risky(tools)
        severity: Severity = "high" if risky else "medium"
        listed = ", ".join(tools[:8]) + (" …" if len(tools) > 8 else "")
        detail = f" including {', '.join(risky[:5])}" if risky else ""
        out.append(
            Finding.of(
                AUTO_APPROVE_TOOLS,
                server,
                f'server "{server.name}" auto-approves {len(tools)} tool(s){detail}',
                fix=(
                    f'Remove the writing tools from "{key}" (keep only read-only ones such as '
                    f'"list_*"/"read_*"), or set "{key}": [] and let Portcullis confirm them: '
                    f"`portcullis wrap {quote(str(server.file))} --server {quote(server.name)}`."
                ),
                pointer=f"/{key}",
                evidence=f"{key}: [{listed}]",
                severity=severity,
            )
        )
    if server.raw.get("trust") is True:
        out.append(
            Finding.of(
                AUTO_APPROVE_TOOLS,
                server,
                f'server "{server.name}" is trusted: every tool call runs without confirmation',
                fix='Remove "trust": true (or set it to false) from the server entry.',
                pointer="/trust",
                evidence="trust: true",
                severity="high",
            )
        )
    return out


def _setting_finding(
    cf: ConfigFile,
    rule: Rule,
    pointer: str,
    line: int,
    message: str,
    fix: str,
    evidence: str,
    severity: Severity | None = None,
) -> Finding:
    return Finding.of(
        rule,
        None,
        message,
        fix=fix,
        file=cf,
        pointer=pointer,
        line=line,
        evidence=evidence,
        severity=severity,
    )


def check_file(cf: ConfigFile) -> Iterable[Finding]:
    """Flag client-level auto-approval settings (``ConfigFile.settings``)."""
    out: list[Finding] = []
    for s in cf.settings:
        # Codex profiles ("profiles.NAME.approval_policy") and nested Claude Code permissions
        # are reported under their own key.
        key = s.key.rsplit(".", 1)[-1] if s.key.startswith(("permissions.", "profiles.")) else s.key
        if key == "enableAllProjectMcpServers" and s.value is True:
            out.append(
                _setting_finding(
                    cf,
                    AUTO_APPROVE_PROJECT_SERVERS,
                    s.pointer,
                    s.line,
                    f"{cf.path.name} enables every project's MCP servers without asking",
                    'Delete "enableAllProjectMcpServers": true and list the servers you '
                    'reviewed instead: "enabledMcpjsonServers": ["server-name"].',
                    "enableAllProjectMcpServers: true",
                )
            )
        elif key == "approval_policy" and s.value == "never":
            out.append(
                _setting_finding(
                    cf,
                    AUTO_APPROVE_TOOLS,
                    s.pointer,
                    s.line,
                    f'{cf.path.name} sets approval_policy = "never": Codex runs every tool and '
                    "command without asking",
                    'Set approval_policy = "on-request" (or "untrusted") in the Codex config.',
                    'approval_policy = "never"',
                    "high",
                )
            )
        elif key in ("chat.tools.autoApprove", "chat.tools.global.autoApprove") and isinstance(
            s.value, dict
        ):
            tools = [str(t) for t, on in s.value.items() if on is True]
            if tools:
                risky = _risky(tools)
                out.append(
                    _setting_finding(
                        cf,
                        AUTO_APPROVE_TOOLS,
                        s.pointer,
                        s.line,
                        f"{cf.path.name} auto-approves {len(tools)} tool(s) in VS Code chat"
                        + (f" including {', '.join(risky[:5])}" if risky else ""),
                        f'Set the writing tools to false under "{s.key}".',
                        f"{s.key}: {{{', '.join(tools[:8])}}}",
                        "high" if risky else "medium",
                    )
                )
        elif key in ("chat.tools.autoApprove", "chat.tools.global.autoApprove") and (
            s.value is True
        ):
            out.append(
                _setting_finding(
                    cf,
                    AUTO_APPROVE_TOOLS,
                    s.pointer,
                    s.line,
                    f"{cf.path.name} auto-approves every tool call in VS Code chat",
                    f'Set "{s.key}": false.',
                    f"{s.key}: true",
                    "high",
                )
            )
        elif key == "defaultMode" and s.value == "bypassPermissions":
            out.append(
                _setting_finding(
                    cf,
                    AUTO_APPROVE_TOOLS,
                    s.pointer,
                    s.line,
                    f"{cf.path.name} bypasses every permission prompt (bypassPermissions)",
                    'Remove "defaultMode": "bypassPermissions" (use "default" or "plan").',
                    f"{s.key}: bypassPermissions",
                    "high",
                )
            )
    return out
