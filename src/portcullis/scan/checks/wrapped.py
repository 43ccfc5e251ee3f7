"""Servers that do not run through the Portcullis gateway.

Informational: the other checks read the config; only the gateway sees what the server does at
run time (tool calls, results, changed tool definitions) and can confirm, redact and audit it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from shlex import quote

from portcullis.scan.model import Finding, Rule, Server
from portcullis.scan.packages import launch

__all__ = ["NOT_WRAPPED", "RULES", "check"]

NOT_WRAPPED = Rule(
    id="not-wrapped",
    title="Server is not guarded by Portcullis",
    severity="info",
    checklist=("audit-logging", "confirm-destructive", "filtered-sensitive-data", "sandboxing"),
    help=(
        "The client talks to this server directly: tool calls are not audited, destructive "
        "tools are not confirmed, secrets in results are not redacted and changed tool "
        "definitions go unnoticed. `portcullis wrap FILE --server NAME` rewrites the entry to "
        "`portcullis run -- <the same command>` (undo with `portcullis unwrap`)."
    ),
)
RULES = (NOT_WRAPPED,)


def check(server: Server) -> Iterable[Finding]:
    """Report a server whose command is not ``portcullis run``, and every remote server."""
    if not server.command:
        if not server.url:
            return []
        # The gateway cannot stand in front of a remote server yet; it must not look guarded.
        finding = Finding.of(
            NOT_WRAPPED,
            server,
            f'remote server "{server.name}" is reached without the Portcullis gateway '
            "(no audit log, confirmation or redaction)",
            fix="This version can only guard stdio servers; the HTTP front (`portcullis "
            "serve`) is planned. Until then, prefer a stdio build of the server if it has one.",
            pointer="/url",
        )
        return [
            replace(finding, checklist=tuple(c for c in finding.checklist if c != "sandboxing"))
        ]
    if launch(server).wrapped:
        return []
    return [
        Finding.of(
            NOT_WRAPPED,
            server,
            f'server "{server.name}" runs without the Portcullis gateway '
            "(no audit log, confirmation or redaction)",
            fix=f"portcullis wrap {quote(str(server.file))} --server {quote(server.name)}",
            pointer="/command",
        )
    ]
