"""Remote servers: plain ``http://`` across the network, and endpoints with no authentication.

Loopback ``http://`` (127.0.0.0/8, ``::1``, ``localhost``) never leaves the machine and is
fine. Remote endpoints reached through a stdio bridge (``npx mcp-remote URL``) are judged the
same way as a ``url`` entry, since the bridge forwards everything to that URL.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from portcullis.scan.checks._util import host_of, is_loopback, is_private, redact_url
from portcullis.scan.model import Finding, Rule, Server, Severity
from portcullis.scan.packages import Token, launch, package_refs

__all__ = ["REMOTE_NO_AUTH", "REMOTE_PLAIN_HTTP", "RULES", "check"]

REMOTE_PLAIN_HTTP = Rule(
    id="remote-plain-http",
    title="Remote MCP server over unencrypted HTTP",
    severity="high",
    checklist=("filtered-sensitive-data", "least-privilege"),
    help=(
        "Over http:// every tool call, result and credential crosses the network in the clear, "
        "and anyone on the path can read or rewrite the tools the model is told to call. Use the "
        "server's https:// URL; if it has none, reach it through an SSH tunnel or a TLS proxy "
        "and point the client at the loopback end."
    ),
)
REMOTE_NO_AUTH = Rule(
    id="remote-no-auth",
    title="Remote MCP server without authentication",
    severity="medium",
    checklist=("least-privilege", "regular-review"),
    help=(
        "A remote endpoint that accepts unauthenticated calls is open to anyone who finds the "
        "URL, and the client cannot tell it apart from an impostor. Configure the server's "
        "authentication (an Authorization header from a secret reference, or OAuth where the "
        "client supports it)."
    ),
)
RULES = (REMOTE_PLAIN_HTTP, REMOTE_NO_AUTH)

_AUTH_HEADER = re.compile(r"(?i)authorization|api[_-]?key|token|auth|cookie|secret|signature")
# Raw entry keys that mean the client authenticates (Codex, Gemini, VS Code, Claude Code).
_AUTH_KEYS = (
    "bearer_token_env_var",
    "bearer_token",
    "env_http_headers",
    "oauth",
    "authProviderType",
    "auth",
    "headersHelper",
    "oauth_resource",
    "scopes",
)
# Clients that run the MCP OAuth flow on their own when a remote server asks for it.
_OAUTH_CLIENTS = frozenset(
    {"claude-code", "claude-desktop", "vscode", "vscode-insiders", "cursor", "gemini", "windsurf"}
    | {"codex", "copilot-cli", "kiro", "opencode"}
)
_BRIDGES = frozenset(
    {"mcp-remote", "supergateway", "mcp-proxy", "@modelcontextprotocol/mcp-remote"}
)
_URL_IN = re.compile(r"https?://[^\s\"'<>]+", re.I)


def _remote_urls(server: Server) -> list[tuple[str, str, list[Token]]]:
    """``(url, pointer, bridge args)`` for every remote endpoint the entry talks to."""
    out: list[tuple[str, str, list[Token]]] = []
    if server.url:
        out.append((server.url, "/url", []))
    if server.command:
        if not any(r.name in _BRIDGES for r in package_refs(server)):
            return out
        tokens = launch(server).tokens
        for tok in tokens:
            m = _URL_IN.match(tok.value)
            if m:
                out.append((m.group(0), tok.pointer, tokens))
    return out


def _credential_header(server: Server, bridge: list[Token]) -> str | None:
    for name, value in server.headers.items():
        # Any header filled from a secret reference is a credential, whatever its name.
        if str(value).strip() and (_AUTH_HEADER.search(name) or "${" in str(value)):
            return name
    for i, tok in enumerate(bridge):
        if tok.value in ("--header", "-H") and i + 1 < len(bridge):
            hname = bridge[i + 1].value.split(":", 1)[0]
            if _AUTH_HEADER.search(hname):
                return hname
    return None


def _has_auth(server: Server, url: str, bridge: list[Token]) -> bool:
    if _credential_header(server, bridge):
        return True
    if any(k in server.raw and server.raw[k] for k in _AUTH_KEYS):
        return True
    # A key in the query string is authentication too (badly placed, reported by secrets).
    query = url.partition("?")[2]
    return bool(re.search(r"(?i)(?:key|token|auth|sig)[a-z_]*=", query)) or "${" in url


def check(server: Server) -> Iterable[Finding]:
    """Flag plain-HTTP remotes and remotes with no authentication configured."""
    out: list[Finding] = []
    for url, pointer, bridge in _remote_urls(server):
        host = host_of(url)
        if not host or is_loopback(host):
            continue
        shown = redact_url(url)
        if url.lower().startswith("http://"):
            header = _credential_header(server, bridge)
            severity: Severity = "critical" if header else "high"
            if not header and is_private(host):
                severity = "medium"
            leak = f"; its {header} header crosses the network in the clear" if header else ""
            out.append(
                Finding.of(
                    REMOTE_PLAIN_HTTP,
                    server,
                    f'server "{server.name}" talks to {host} over plain http://{leak}',
                    fix=(
                        f'Use "{shown.replace("http://", "https://", 1)}" if the server offers '
                        "TLS; otherwise tunnel it (`ssh -N -L 8080:localhost:PORT "
                        f"{host}`) and use http://127.0.0.1:8080/…"
                    ),
                    pointer=pointer,
                    evidence=shown,
                    severity=severity,
                )
            )
        if not _has_auth(server, url, bridge):
            oauth = server.client in _OAUTH_CLIENTS
            out.append(
                Finding.of(
                    REMOTE_NO_AUTH,
                    server,
                    f'server "{server.name}" ({host}) has no credential configured'
                    + (
                        "; if it signs in with OAuth in the client this is expected"
                        if oauth
                        else ""
                    ),
                    fix=(
                        'Add "headers": {"Authorization": "Bearer ${API_TOKEN}"} (a reference, '
                        "never the token), or complete the server's OAuth sign-in in the "
                        "client; if the endpoint needs no authentication, confirm it serves "
                        "nothing private."
                    ),
                    pointer=pointer,
                    evidence=shown,
                    severity="low" if oauth else "medium",
                )
            )
    return out
