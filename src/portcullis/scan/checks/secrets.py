"""Credentials written into the config: tokens in ``env``, ``args``, ``headers`` and URLs.

The project's secret detector does the recognising (with its checksums, entropy floors and
published-example lists, so ``AKIAIOSFODNN7EXAMPLE`` is not a finding). On top of it: values
that are references (``${VAR}``, ``${input:x}``, ``$VAR`` …) are never findings; a long random
literal under a name such as ``*_TOKEN`` is one even when no vendor rule knows its shape; and a
database URL with an inline password gets its own rule, critical when it points away from this
machine or names production.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from shlex import quote
from urllib.parse import parse_qsl, unquote, urlsplit

from portcullis.detect.secrets import is_published_example, scan_secrets
from portcullis.scan.checks._util import (
    entropy,
    is_loopback,
    is_reference,
    mask,
    redact_url,
    strip_references,
)
from portcullis.scan.model import Finding, Rule, Server, Severity

__all__ = ["DB_URL_PASSWORD", "PLAINTEXT_SECRET", "RULES", "check"]

PLAINTEXT_SECRET = Rule(
    id="plaintext-secret",
    title="Credential written in plain text in the config",
    severity="high",
    checklist=("no-production-credentials", "filtered-sensitive-data"),
    help=(
        "MCP config files are read by every tool on the machine, synced to dotfile repos and "
        "pasted into bug reports; a credential written in them is as good as published. Replace "
        'the value with a reference the client expands ("${API_KEY}" in Claude Code, '
        '"${env:API_KEY}" in Cursor, "${input:api-key}" in VS Code) or let Portcullis inject it '
        '(env: {API_KEY: "${keyring:service/api-key}"} in the policy), then rotate the '
        "exposed credential."
    ),
)
DB_URL_PASSWORD = Rule(
    id="db-url-password",
    title="Database URL with an inline password",
    severity="high",
    checklist=("no-production-credentials", "least-privilege"),
    help=(
        "A database URL with the password inside gives the model (and anyone who reads the "
        "file) direct access to the database, usually with the owner's rights. Keep the URL in "
        "the environment or a keyring, connect with a read-only role, and never point an "
        "assistant at production: `portcullis sql --db-env DATABASE_URL` serves read-only SQL "
        "with the policy's table deny-list."
    ),
)
RULES = (PLAINTEXT_SECRET, DB_URL_PASSWORD)

# Detector rules that describe a password inside a URL or connection string: when the
# database rule has already reported that value, these would be a second finding for it.
_URL_RULES = frozenset(
    {
        "postgres-url-password",
        "mysql-url-password",
        "mongodb-url-password",
        "redis-url-password",
        "amqp-url-password",
        "url-password",
        "connection-string-password",
        "generic-password",
    }
)
_SENSITIVE_NAME = re.compile(
    r"(?i)(?:token|secret|passw(?:or)?d|passphrase|pwd|api[_-]?key|apikey|access[_-]?key"
    r"|private[_-]?key|credential|client[_-]?secret|signing[_-]?key|session|cookie|bearer"
    r"|(?:^|[_-])auth(?:$|[_-]|orization))"
)
_PASSWORD_NAME = re.compile(r"(?i)passw(?:or)?d|passphrase|pwd")
_PLACEHOLDER = re.compile(
    r"(?i)^(?:<.*>|\[.*\]|\{\{.*\}\}|(.)\1*|your[_ -].*|.*[_ -]here|.*placeholder.*|changeme"
    r"|redacted|todo|tbd|none|null|true|false|example.*|dummy.*|test|secret|password|\*+)$"
)
_DB_SCHEMES = (
    r"postgres(?:ql)?|mysql|mariadb|mongodb(?:\+srv)?|rediss?|mssql|sqlserver|oracle"
    r"|cockroach(?:db)?|clickhouse|couchdb|neo4j(?:\+s)?|bolt|amqps?|cassandra|snowflake"
)
_DB_URL = re.compile(
    rf"(?i)\b(?P<jdbc>jdbc:)?(?P<scheme>{_DB_SCHEMES})(?:\+[a-z0-9_-]+)?://(?P<rest>[^\s\"'<>]+)"
)
_CONN_STRING = re.compile(
    r"(?i)(?:server|data source|host)\s*=\s*(?P<host>[^;]+);.*?(?:password|pwd)\s*=\s*"
    r"(?P<pw>[^;\s\"']+)"
)
_PROD = re.compile(r"(?i)(?:^|[^a-z])(?:prod|production|prd|live|primary|master)(?:$|[^a-z])")


@dataclass(frozen=True)
class _Value:
    """One configured string: what it is (for messages), its pointer, an optional name."""

    where: str
    pointer: str
    text: str
    name: str | None = None


def _placeholder(value: str) -> bool:
    return bool(_PLACEHOLDER.match(value.strip()))


def _looks_random(value: str, minimum: int) -> bool:
    v = value.strip()
    if len(v) < minimum or " " in v or _placeholder(v) or v.isdigit() or is_published_example(v):
        return False
    if v.startswith(("/", "~", "./", "../", "http://", "https://")) or re.match(r"^[A-Za-z]:\\", v):
        return False
    lower = any(c.islower() for c in v)
    upper = any(c.isupper() for c in v)
    digit = any(c.isdigit() for c in v)
    # Words and lists ("repo,read:org,workflow", "read-only") are settings, not keys: a key
    # mixes digits with letters, or both cases over a long run.
    if "," in v or not ((digit and (lower or upper)) or (lower and upper and len(v) >= 20)):
        return False
    return entropy(v) >= 3.0


def _values(server: Server) -> list[_Value]:
    out: list[_Value] = []
    for name, value in server.env.items():
        out.append(_Value(f"env {name}", f"/env/{_esc(name)}", str(value), str(name)))
    for name, value in server.headers.items():
        out.append(_Value(f"header {name}", f"/headers/{_esc(name)}", str(value), str(name)))
    if server.url:
        out.append(_Value("url", "/url", server.url))
    if server.command and " " in server.command.strip():
        out.append(_Value("command", "/command", server.command))
    args = [str(a) for a in server.args]
    for i, arg in enumerate(args):
        prev = args[i - 1] if i else ""
        # "--api-key VALUE": the flag is the value's name, as an env-var name would be.
        label = prev.lstrip("-") if prev.startswith("-") and "=" not in prev else None
        if label is None and arg.startswith("-") and "=" in arg:
            label, _, arg = arg.lstrip("-").partition("=")
        elif label is None and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", arg):
            # docker -e NAME=value, env NAME=value
            label, _, arg = arg.partition("=")
        out.append(_Value(f"argument {i}", f"/args/{i}", arg, label))
    return out


def _esc(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def _var(name: str) -> str:
    """An environment-variable name for ``name`` (``api-key`` → ``API_KEY``)."""
    return re.sub(r"[^A-Za-z0-9_]", "_", name).strip("_").upper() or "SECRET"


def _ref_example(server: Server, name: str) -> str:
    var = _var(name)
    return {
        "claude-code": f"${{{var}}}",
        "cursor": f"${{env:{var}}}",
        "vscode": f"${{input:{var.lower().replace('_', '-')}}}",
        "vscode-insiders": f"${{input:{var.lower().replace('_', '-')}}}",
        "gemini": f"${var}",
        "opencode": f"{{env:{var}}}",
    }.get(server.client, f"${{{var}}}")


def _secret_fix(server: Server, value: _Value) -> str:
    name = value.name or "SECRET"
    var = _var(name)
    ref = _ref_example(server, name)
    if value.pointer.startswith("/env/"):
        where = f'"env": {{"{name}": "{ref}"}}'
    elif value.pointer.startswith("/headers/"):
        bearer = "Bearer " if name.lower() == "authorization" else ""
        token = ref if bearer == "" else _ref_example(server, "API_TOKEN")
        where = f'"headers": {{"{name}": "{bearer}{token}"}}'
    else:
        where = f'an environment variable the server reads ("env": {{"{var}": "{ref}"}})'
    return (
        f"Rotate the exposed credential, then reference it instead of writing it: {where}. "
        "If this client does not expand references, wrap the server (`portcullis wrap "
        f"{quote(str(server.file))} --server {quote(server.name)}`) and give the policy "
        f'env: {{{var}: "${{keyring:mcp/{var.lower()}}}"}}.'
    )


def _db_findings(server: Server, value: _Value, text: str) -> list[Finding]:
    out: list[Finding] = []
    for m in _DB_URL.finditer(text):
        rest = m.group("rest")
        auth = re.match(r"^(?P<userinfo>[^/?#]*)@(?P<host>[^/?#@]*)(?P<tail>.*)$", rest)
        password = ""
        host = ""
        tail = rest
        if auth:
            _user, sep, password = auth.group("userinfo").partition(":")
            password = password if sep else ""
            host, tail = auth.group("host"), auth.group("tail")
        else:
            host = re.split(r"[/?#;]", rest, maxsplit=1)[0]
        if not password and m.group("jdbc"):
            in_query = re.search(r"(?i)[?&;]password=([^&;]+)", rest)
            password = in_query.group(1) if in_query else ""
        if not password or is_reference(password) or _placeholder(unquote(password)):
            continue
        hostname = host.rpartition(":")[0] if host.count(":") == 1 else host
        database = re.split(r"[?#;]", tail.lstrip("/"), maxsplit=1)[0]
        out.append(
            _db_finding(
                server,
                value,
                m.group("scheme").lower(),
                hostname,
                database,
                _db_evidence(m.group(0), password),
            )
        )
    for m in _CONN_STRING.finditer(text):
        pw = m.group("pw")
        if is_reference(pw) or _placeholder(pw):
            continue
        db = re.search(r"(?i)(?:database|initial catalog)\s*=\s*([^;]+)", text)
        out.append(
            _db_finding(
                server,
                value,
                "connection string",
                m.group("host").strip(),
                db.group(1).strip() if db else "",
                _db_evidence(m.group(0), pw),
            )
        )
    return out


def _db_evidence(matched: str, password: str) -> str:
    shown = matched.replace(password, "****") if password else matched
    return redact_url(shown) if "://" in shown else shown


def _db_finding(
    server: Server, value: _Value, kind: str, host: str, database: str, evidence: str
) -> Finding:
    host_only = host.split(",")[0].strip("[]").split(":")[0] if host else ""
    local = bool(host_only) and (is_loopback(host_only) or host_only == "host.docker.internal")
    prod_name = bool(_PROD.search(host) or _PROD.search(database))
    severity: Severity = "critical" if (not local or prod_name) else "high"
    why = (
        "names production"
        if prod_name
        else "is a database on another machine"
        if not local
        else "is a local database"
    )
    name = value.name or "DATABASE_URL"
    return Finding.of(
        DB_URL_PASSWORD,
        server,
        f'server "{server.name}" {value.where} holds a {kind} URL with an inline password '
        f"(host {host_only or '?'}{', database ' + database if database else ''}; it {why})",
        fix=(
            f'Move the URL out of the file ("{name}": "{_ref_example(server, name)}"), rotate the '
            "password, and connect as a read-only role on a non-production copy; to guard the "
            "queries too, use `portcullis sql --db-env DATABASE_URL` as the server."
        ),
        pointer=value.pointer,
        evidence=evidence,
        severity=severity,
    )


def _detector_findings(server: Server, value: _Value, text: str, skip: bool) -> list[Finding]:
    prefix = f"{value.name}=" if value.name else ""
    out: list[Finding] = []
    for f in scan_secrets(prefix + text):
        if f.end <= len(prefix) or (skip and f.rule in _URL_RULES):
            continue
        label = f"{value.name}=" if value.name else ""
        out.append(
            Finding.of(
                PLAINTEXT_SECRET,
                server,
                f'server "{server.name}" {value.where} holds a credential in plain text ({f.rule})',
                fix=_secret_fix(server, value),
                pointer=value.pointer,
                evidence=label + f.evidence,
                severity=f.severity,
            )
        )
    return out


def _fallback(server: Server, value: _Value, text: str) -> list[Finding]:
    """A long random literal under a credential-looking name, which no vendor rule knew."""
    candidates: list[tuple[str, str]] = []
    header = re.match(r"^\s*([A-Za-z0-9_-]+)\s*:\s*(\S.*)$", text)
    if header and _SENSITIVE_NAME.search(header.group(1)):
        # "--header", "X-API-Key: value" as a bridge such as mcp-remote takes it.
        literal = header.group(2).strip()
        if literal.lower().startswith(("bearer ", "basic ", "token ")):
            literal = literal.split(None, 1)[1] if " " in literal else ""
        candidates.append((header.group(1), literal))
    if value.name and _SENSITIVE_NAME.search(value.name):
        literal = text.strip()
        if literal.lower().startswith(("bearer ", "basic ", "token ")):
            literal = literal.split(None, 1)[1] if " " in literal else ""
        candidates.append((value.name, literal))
    if "://" in text:
        try:
            parts = urlsplit(text.strip())
            user, pw = parts.username or "", parts.password or ""
            query = parse_qsl(parts.query)
        except ValueError:
            user, pw, query = "", "", []
        if pw:
            candidates.append(("password", unquote(pw)))
        if user and not pw:
            candidates.append(("token", unquote(user)))
        candidates.extend((k, v) for k, v in query if _SENSITIVE_NAME.search(k))
    out: list[Finding] = []
    for name, raw_literal in candidates:
        literal = raw_literal.strip()
        minimum = 8 if _PASSWORD_NAME.search(name) else 16
        if name == "password" and literal and not _placeholder(literal):
            minimum = 1
        if not literal or is_reference(literal):
            continue
        if not (minimum == 1 or _looks_random(literal, minimum)):
            continue
        out.append(
            Finding.of(
                PLAINTEXT_SECRET,
                server,
                f'server "{server.name}" {value.where} holds a literal that looks like a '
                f"credential ({name})",
                fix=_secret_fix(server, value),
                pointer=value.pointer,
                evidence=f"{name}={mask(literal)}",
                severity="medium",
            )
        )
        break
    return out


def check(server: Server) -> Iterable[Finding]:
    """Flag plain-text credentials and database URLs with passwords in a server entry."""
    out: list[Finding] = []
    for value in _values(server):
        if not value.text or is_reference(value.text):
            continue
        text = strip_references(value.text)
        db = _db_findings(server, value, text)
        out.extend(db)
        found = _detector_findings(server, value, text, skip=bool(db))
        if not found and not db:
            found = _fallback(server, value, text)
        out.extend(found)
    return out
