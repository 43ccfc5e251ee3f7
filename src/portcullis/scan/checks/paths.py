"""File-system reach: servers rooted at ``/``, a home directory, a drive or credential store.

A filesystem server's roots are everything the model can read (and usually write). ``/`` or a
home directory hands it ``~/.ssh``, ``~/.aws`` and every MCP client config, including this
one. The check is lexical on purpose (no I/O): it reads what the config says, the way the
server will receive it, and never looks at the machine running the scan.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable
from shlex import quote

from portcullis.scan.model import Finding, Rule, Server, Severity
from portcullis.scan.packages import Token, exe_name, launch, package_refs, server_args

__all__ = ["FS_NO_ROOT", "FS_ROOT_TOO_BROAD", "RULES", "check", "classify_path"]

FS_ROOT_TOO_BROAD = Rule(
    id="fs-root-too-broad",
    title="File-system access is rooted too broadly",
    severity="high",
    checklist=("least-privilege", "filtered-sensitive-data"),
    help=(
        "A file-system root of /, a drive, a home directory or a credential directory (~/.ssh, "
        "~/.aws, /etc …) lets the model read SSH keys, cloud credentials and every MCP client "
        "config, and often write them. Give the server only the project directory it needs "
        "(for example /home/me/src/app instead of /home/me), and run it through `portcullis "
        "run` with paths.roots set to the same directory."
    ),
)
FS_NO_ROOT = Rule(
    id="fs-no-root",
    title="File-system server has no directory of its own",
    severity="medium",
    checklist=("least-privilege",),
    help=(
        "A filesystem server started without a directory relies on the roots the client sends, "
        "which differ by client and can be the whole workspace or nothing. Name the directory "
        "the server may use as an argument so its reach is visible and reviewable."
    ),
)
RULES = (FS_ROOT_TOO_BROAD, FS_NO_ROOT)

# What the server name or package looks like when it serves files.
_FS_PACKAGE = re.compile(r"(?:^|[/\\@_.-])(?:filesystem|file-?system|fs)(?:$|[/\\_.@-])", re.I)
# Flags (of any server) whose value is a directory the server will serve.
_DIR_FLAGS = frozenset(
    {"--allow", "--allowed", "--allowed-directory", "--allowed-directories", "--allowed-dirs"}
    | {"--allow-dir", "--root", "--roots", "--root-dir", "--directory", "--dir", "--path"}
    | {"--workspace", "--base-dir", "--basedir", "--base-path", "--repository", "--repo"}
    | {"--working-dir", "--folder", "--mount", "--sandbox-dir", "--home"}
)
_SHORT_DIR_FLAGS = frozenset({"-r", "-d"})

_HOME_FORMS = re.compile(
    r"^(?:~|\$HOME|\$\{HOME\}|\$\{env:HOME\}|\$\{env:USERPROFILE\}|\$\{userHome\}|%USERPROFILE%"
    r"|%HOMEDRIVE%%HOMEPATH%|\$env:USERPROFILE|\$env:HOME|\{env:HOME\})(?=/|$)",
    re.I,
)
_HOME_ABS = re.compile(r"^(?:/home/[^/]+|/users/[^/]+|/root|/var/root|[a-z]:/users/[^/]+)(?=/|$)")
_DRIVE_ROOT = re.compile(r"^[a-z]:/?$")

# Directories under a home that hold credentials; exposing any of them (or anything inside)
# exposes the keys themselves.
_HOME_SECRETS = (
    ".ssh",
    ".aws",
    ".kube",
    ".gnupg",
    ".config/gcloud",
    ".azure",
    ".docker",
    ".netrc",
    ".git-credentials",
    ".password-store",
    ".vault-token",
    ".npmrc",
    ".pypirc",
    ".config/gh",
    ".terraform.d",
    ".oci",
    ".config/op",
    "library/keychains",
    "appdata/roaming/gcloud",
    ".claude",
    ".claude.json",
    ".cursor",
    ".codex",
    ".gemini",
)
_SYSTEM_SECRETS = ("/etc", "/var/run/secrets", "/run/secrets", "/proc", "/sys", "/boot", "/dev")


def _normalise(path: str) -> str:
    p = path.strip().strip("'\"").replace("\\", "/")
    if p.lower().startswith("file://"):
        p = p[7:]
        if re.match(r"^/[A-Za-z]:", p):
            p = p[1:]
    m = _HOME_FORMS.match(p)
    if m:
        p = "~" + p[m.end() :]
    m2 = _HOME_ABS.match(p.lower())
    if m2:
        p = "~" + p[m2.end() :]
    if p.startswith("~"):
        rest = posixpath.normpath("/" + p[1:].lstrip("/"))
        return "~" if rest == "/" else "~" + rest
    if re.match(r"^[A-Za-z]:", p):
        drive, rest = p[:2].lower(), p[2:] or "/"
        rest = posixpath.normpath("/" + rest.lstrip("/"))
        return drive + ("/" if rest == "/" else rest)
    if p.startswith("/"):
        # Two leading slashes are still the root to every server that matters here.
        return posixpath.normpath("/" + p.lstrip("/"))
    return p


def classify_path(path: str) -> tuple[str, Severity] | None:
    """How broad a directory is: ``("the file-system root", "critical")``, or ``None`` if fine."""
    p = _normalise(path)
    low = p.lower()
    if p == "/":
        return "the file-system root /", "critical"
    if _DRIVE_ROOT.match(low):
        return f"the drive root {p[:2].upper()}\\", "critical"
    if p == "~":
        return "the home directory", "high"
    if low in ("/home", "/users", "c:/users"):
        return "every user's home directory", "high"
    if p.startswith("~/"):
        sub = low[2:]
        for secret in _HOME_SECRETS:
            if sub == secret or sub.startswith(secret + "/"):
                return f"the credential location ~/{secret}", "critical"
        return None
    for system in _SYSTEM_SECRETS:
        if low == system or low.startswith(system + "/"):
            return f"the system directory {system}", "high"
    return None


def _looks_like_path(value: str) -> bool:
    v = value.strip().strip("'\"")
    return bool(
        v
        and (
            v.startswith(("/", "~", "\\", "$HOME", "${HOME}", "%USERPROFILE%", "${env:", "file:"))
            or re.match(r"^[A-Za-z]:($|[\\/])", v)
            or v.startswith(("${userHome}", "$env:"))
        )
    )


def _dir_values(args: list[Token]) -> list[Token]:
    """Values of directory flags (``--root /x``, ``--root=/x``) in the server's own args."""
    out: list[Token] = []
    for i, t in enumerate(args):
        flag, eq, val = t.value.partition("=")
        if flag in _DIR_FLAGS or flag in _SHORT_DIR_FLAGS:
            if eq:
                out.extend(Token(v, t.pointer) for v in val.split(",") if v)
            elif i + 1 < len(args) and not args[i + 1].value.startswith("-"):
                out.append(args[i + 1])
    return out


def _is_fs_server(server: Server) -> bool:
    names = [r.name for r in package_refs(server, direct=True) if r.ecosystem != "docker"]
    tokens = launch(server).tokens
    if tokens and not names:
        # A locally installed binary (mcp-server-filesystem) or script path.
        names = [exe_name(tokens[0].value)] + [
            t.value for t in tokens[1:3] if t.value.endswith((".js", ".py", ".ts", ".mjs"))
        ]
    return any(_FS_PACKAGE.search(n) for n in names)


def _fix(server: Server, what: str) -> str:
    return (
        f"Replace {what} with the one project directory the server needs, e.g. "
        f'"/home/me/src/app" instead of "/home/me"; then guard it: '
        f"`portcullis wrap {quote(str(server.file))} --server {quote(server.name)}` and set "
        "paths.roots to that directory in the policy."
    )


def check(server: Server) -> Iterable[Finding]:
    """Flag broad directory roots and filesystem servers with no root of their own."""
    if not server.command:
        return []
    args = server_args(server)
    fs = _is_fs_server(server)
    candidates = _dir_values(args)
    if fs:
        # The official filesystem server takes its roots as plain positional arguments.
        seen = {id(t) for t in candidates}
        candidates += [
            t for t in args if id(t) not in seen and _looks_like_path(t.value) and t.value != "-"
        ]
    out: list[Finding] = []
    reported: set[str] = set()
    for tok in candidates:
        verdict = classify_path(tok.value)
        if verdict is None or tok.pointer + tok.value in reported:
            continue
        reported.add(tok.pointer + tok.value)
        what, severity = verdict
        out.append(
            Finding.of(
                FS_ROOT_TOO_BROAD,
                server,
                f'server "{server.name}" can reach {what} ({tok.value!r})',
                fix=_fix(server, repr(tok.value)),
                pointer=tok.pointer,
                evidence=tok.value,
                severity=severity,
            )
        )
    if fs and not any(not t.value.startswith("-") for t in args):
        out.append(
            Finding.of(
                FS_NO_ROOT,
                server,
                f'filesystem server "{server.name}" names no directory: it will use whatever '
                "roots the client offers",
                fix=(
                    "Add the project directory as the last argument, e.g. "
                    '"args": ["-y", "@modelcontextprotocol/server-filesystem@<version>", '
                    '"/home/me/src/app"].'
                ),
                pointer="/args",
            )
        )
    return out
