"""The least-privilege starting policy ``wrap`` writes for each server it wraps.

Nothing is known about a server's tools before it runs, so the tool rules are name patterns:
read-looking tools are allowed, tools whose names say they write, delete, move, execute or
send are under ``confirm``, and everything else falls to ``default: confirm`` (a person sees
each call until the rules are relaxed). Filesystem servers get ``paths.roots`` from their
configured directories, with the root, the home directory, system and credential directories
narrowed to the project the entry belongs to, or (no project) dropped with a ``TODO`` comment
and every tool put under ``confirm``. A ``sandbox`` block is added only where the sandbox runs
on this machine and the launch is one it can bind (a filesystem server started from an
installed or version-pinned package).

Blocks are merged into the policy file with ruamel.yaml's round-trip mode, which keeps the
user's comments; an existing ``servers.<name>`` block is never replaced.
"""

from __future__ import annotations

import hashlib
import io
import ntpath
import os
import re
from dataclasses import dataclass, field
from pathlib import PurePath, PurePosixPath, PureWindowsPath
from typing import Any

__all__ = [
    "ALLOW",
    "CONFIRM",
    "Block",
    "comment_safe",
    "existing_defaults",
    "filesystem_roots",
    "merge",
    "policy_name",
    "server_block",
    "validate",
]

# Tools whose names read: allowed.
ALLOW: tuple[str, ...] = (
    "read*",
    "get*",
    "list*",
    "search*",
    "find*",
    "describe*",
    "view*",
    "show*",
    "directory_tree",
)
_VERBS = (
    "write",
    "edit",
    "create",
    "delete",
    "remove",
    "move",
    "rename",
    "update",
    "exec",
    "push",
    "send",
    "upload",
    "install",
    "deploy",
    "kill",
    "drop",
    "insert",
    "commit",
    "merge",
    "publish",
    "modify",
    "patch",
)
_SHORT_VERBS = ("run", "set", "put", "post")
# Write-, delete- and exec-looking names anywhere in the name (snake, kebab and camelCase), so
# that `get_or_create_x` is confirmed even though `get*` allows it (confirm wins over allow).
CONFIRM: tuple[str, ...] = (
    *(f"*[{v[0].upper()}{v[0]}]{v[1:]}*" for v in _VERBS),
    *(p for v in _SHORT_VERBS for p in (f"{v}*", f"*_{v}*", f"*{v.capitalize()}*")),
)

_SYSTEM = (
    "/etc",
    "/usr",
    "/var",
    "/bin",
    "/sbin",
    "/lib",
    "/boot",
    "/proc",
    "/sys",
    "/dev",
    "/root",
)
_WINDOWS_SYSTEM = ("Windows", "Program Files", "Program Files (x86)", "ProgramData")
# AppData holds browser profiles, tokens and the credential store's files.
_WINDOWS_CREDENTIALS = ("AppData",)
# The path rules of this machine (tests swap in ntpath to check the Windows rules).
_os_path: Any = os.path
_CREDENTIALS = (
    ".ssh",
    ".aws",
    ".gnupg",
    ".config",
    ".kube",
    ".docker",
    ".azure",
    ".gcloud",
    ".netrc",
    ".password-store",
    ".local/share/keyrings",
    "Library/Keychains",
)


@dataclass
class Block:
    """One generated ``servers.<name>`` block and what to tell the user about it."""

    name: str
    value: dict[str, Any]
    comment: str
    notes: list[str] = field(default_factory=list)


# Characters a YAML reader (or a terminal) treats as a line break or a control: in a comment
# they would end the comment and let an entry's name or argument write policy keys.
_UNSAFE_IN_COMMENT = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\ufeff]")


def comment_safe(text: str) -> str:
    """``text`` with every control and line-break character escaped as Python would write it."""
    return _UNSAFE_IN_COMMENT.sub(lambda m: m.group().encode("unicode_escape").decode(), text)


def policy_name(client_name: str) -> str:
    """A policy server name for a client's entry name (letters, digits, ``_``, ``-``; no ``__``)."""
    name = re.sub(r"[^A-Za-z0-9_-]+", "-", client_name).strip("-")
    while "__" in name:
        name = name.replace("__", "_")
    if not name:
        name = "server-" + hashlib.sha256(client_name.encode()).hexdigest()[:8]
    return name


def _is_filesystem(argv: list[str]) -> int | None:
    """The index of the filesystem server's package (or binary) in ``argv``, else None."""
    for i, item in enumerate(argv):
        if "server-filesystem" in item:
            return i
    return None


def _broad(path: str, home: str) -> str | None:
    """Why ``path`` is too broad a root (None when it is fine).

    Judged with this machine's path rules: on Windows a drive root is a whole file system as
    ``/`` is elsewhere, and names compare without case.
    """
    windows = _os_path is ntpath
    pure: type[PurePath] = PureWindowsPath if windows else PurePosixPath
    p = pure(_os_path.normpath(path))
    h = pure(_os_path.normpath(home))
    if p == p.parent:
        return "the whole file system"
    if p == h:
        return "the home directory"
    if h.is_relative_to(p):
        return "a directory holding the home directory"
    systems = [pure(p.anchor, d) for d in _WINDOWS_SYSTEM] if windows else map(pure, _SYSTEM)
    for system in systems:
        if p == system or p.is_relative_to(system):
            return "a system directory"
    for cred in (*_CREDENTIALS, *(_WINDOWS_CREDENTIALS if windows else ())):
        c = h / cred
        if p == c or p.is_relative_to(c):
            return "a credential directory"
    return None


def filesystem_roots(
    argv: list[str], *, home: str, project: str | None
) -> tuple[list[str], list[str]] | None:
    """``(roots, todo)`` for a filesystem server, or None for any other server.

    ``todo`` explains each configured directory that was dropped because it is too broad and
    no project directory was known to narrow it to.
    """
    at = _is_filesystem(argv)
    if at is None:
        return None
    roots: list[str] = []
    todo: list[str] = []
    for arg in argv[at + 1 :]:
        if arg.startswith("-"):
            continue
        expanded = _os_path.expanduser(arg)
        if not _os_path.isabs(expanded):
            if project is None:
                todo.append(f"{arg}: a relative directory and no project to resolve it against")
                continue
            expanded = _os_path.normpath(_os_path.join(project, expanded))
            arg = expanded
        why = _broad(expanded, home)
        if why is None:
            if arg not in roots:
                roots.append(arg)
        elif project is not None and _broad(project, home) is None:
            if project not in roots:
                roots.append(project)
        else:
            todo.append(f"{arg}: {why}")
    return roots, todo


def _sandboxable(argv: list[str]) -> str | None:
    """The sandbox profile for a launch the sandbox can bind, else None."""
    exe = os.path.basename(argv[0]).lower().removesuffix(".exe").removesuffix(".cmd")
    if exe == "npx":
        # npx without a pinned version has no known package to bind: it cannot run sandboxed.
        at = _is_filesystem(argv)
        spec = argv[at] if at is not None else ""
        return "node" if re.search(r"@[0-9][^/]*$", spec) else None
    # The node profile binds the node_modules tree the *command* lives in; `node script.js`
    # names no tree, so its script would be invisible inside the sandbox.
    if "node_modules" in argv[0].replace("\\", "/").split("/"):
        return "node"
    return None


def server_block(
    name: str,
    argv: list[str],
    *,
    home: str,
    project: str | None,
    sandbox: bool,
    env: dict[str, str],
    origin: str,
    inherit: frozenset[str] = frozenset(),
) -> Block:
    """The starting policy for one server launched by ``argv`` (its original command).

    ``inherit`` names the keys the policy's ``defaults`` already sets: they are left out, so
    the server gets the user's own rules for them, never wider generated ones.
    """
    value: dict[str, Any] = {"tools": {}}
    notes: list[str] = []
    comment = comment_safe(f"added by `portcullis wrap` for {origin}")
    tools: dict[str, Any] = {"default": "confirm", "allow": list(ALLOW), "confirm": list(CONFIRM)}
    fs = filesystem_roots(argv, home=home, project=project)
    if fs is not None:
        roots, todo = fs
        if todo:
            comment += "\nTODO narrow: " + comment_safe("; ".join(todo))
            dropped = "roots not narrowed (" + "; ".join(todo) + ")"
            if not roots:
                dropped += (
                    ": until you add `paths.roots`, every tool of this server needs your "
                    "confirmation"
                )
            notes.append(dropped)
        if roots:
            value["paths"] = {"roots": roots}
            notes.append("paths.roots: " + ", ".join(roots))
        if not roots:
            tools["allow"] = []
    value["tools"] = tools
    if env:
        # `run` hands a block's env only to the command the block names (a client config could
        # otherwise run any program with these secrets), so the launch is pinned here too.
        value = {"command": argv[0], "args": list(argv[1:]), **value, "env": dict(env)}
    profile = _sandboxable(argv)
    if sandbox and fs is not None and fs[0] and profile is not None:
        value["sandbox"] = {"profile": profile, "network": "none"}
        notes.append(f"sandbox: {profile} profile, no network")
    kept = sorted(k for k in ("tools", "paths", "sandbox") if k in inherit)
    if kept:
        for key in kept:
            value.pop(key, None)
        notes = [n for n in notes if not n.startswith(tuple(kept))]
        notes.append(
            "uses your policy's " + ", ".join(f"defaults.{k}" for k in kept) + " (not replaced)"
        )
    return Block(name, value, comment, notes)


def existing_defaults(text: str | None) -> frozenset[str]:
    """The keys a policy file's ``defaults`` block sets."""
    if not text:
        return frozenset()
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        return frozenset()
    defaults = data.get("defaults") if isinstance(data, dict) else None
    return frozenset(str(k) for k in defaults) if isinstance(defaults, dict) else frozenset()


def _yaml() -> Any:
    from ruamel.yaml import YAML

    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = 4096
    yaml.indent(mapping=2, sequence=4, offset=2)
    return yaml


def existing_servers(text: str | None) -> dict[str, dict[str, str]]:
    """The servers a policy file's text already defines, each with its ``env`` mapping."""
    if not text:
        return {}
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        return {}
    servers = data.get("servers") if isinstance(data, dict) else None
    if not isinstance(servers, dict):
        return {}
    out: dict[str, dict[str, str]] = {}
    for name, block in servers.items():
        env = block.get("env") if isinstance(block, dict) else None
        out[str(name)] = {str(k): str(v) for k, v in env.items()} if isinstance(env, dict) else {}
    return out


_HEADER = (
    "# Portcullis policy: which MCP servers the gateway guards and what each may do.\n"
    "# Reference: docs/policy.md. Created by `portcullis wrap`.\n"
)


def merge(text: str | None, blocks: list[Block]) -> str:
    """``text`` (or a new file) with each block added under ``servers`` unless it exists.

    The new blocks are inserted as text at the end of the ``servers`` mapping (or a new
    ``servers:`` at the end of the file), so every byte the user wrote stays as it was. Only a
    non-empty flow-style ``servers: {…}`` goes through a ruamel.yaml round trip instead.
    """
    if text is None or not text.strip():
        return _HEADER + "version: 1\nservers:\n" + _render(blocks, "  ")
    from portcullis.scan.parse import ParseError, escape, parse

    existing = existing_servers(text)
    blocks = [b for b in blocks if b.name not in existing]
    if not blocks:
        return text
    try:
        doc = parse(text, "yaml")
    except ParseError:
        return text  # nothing can be added to a broken file: the validator reports its error
    servers = doc.value.get("servers") if isinstance(doc.value, dict) else None
    if not isinstance(doc.value, dict) or "servers" not in doc.value:
        sep = "" if text.endswith("\n") else "\n"
        return text + sep + "servers:\n" + _render(blocks, "  ")
    span = doc.spans["/servers"]
    if isinstance(servers, dict) and not servers and text[span.start : span.end] == "{}":
        return (
            text[: span.start].rstrip(" ")
            + "\n"
            + _render(blocks, "  ").rstrip("\n")
            + (text[span.end :])
        )
    if servers is not None and not isinstance(servers, dict):
        return text  # not a mapping: nothing can be added, and the validator says why
    if not isinstance(servers, dict) or text[span.start : span.start + 1] == "{":
        return _round_trip(text, blocks)
    first = doc.spans["/servers/" + escape(next(iter(servers)))]
    key_at = first.key_start if first.key_start is not None else first.start
    indent = " " * (key_at - (text.rfind("\n", 0, key_at) + 1))
    at = span.end
    sep = "" if text[:at].endswith("\n") else "\n"
    return text[:at] + sep + _render(blocks, indent) + text[at:]


def _render(blocks: list[Block], indent: str) -> str:
    """The blocks as YAML (``name:`` then its keys), each line indented by ``indent``."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    doc = CommentedMap()
    for block in blocks:
        doc[block.name] = _commented(block.value, CommentedMap, CommentedSeq)
        doc.yaml_set_comment_before_after_key(block.name, before=block.comment, indent=0)
    out = io.StringIO()
    _yaml().dump(doc, out)
    return "".join(
        indent + line if line.strip() else line for line in out.getvalue().splitlines(True)
    )


def _round_trip(text: str, blocks: list[Block]) -> str:
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    yaml = _yaml()
    doc = yaml.load(text)
    servers = doc.get("servers")
    if servers is None:
        servers = CommentedMap()
        doc["servers"] = servers
    for block in blocks:
        servers[block.name] = _commented(block.value, CommentedMap, CommentedSeq)
        servers.yaml_set_comment_before_after_key(block.name, before=block.comment, indent=2)
    out = io.StringIO()
    yaml.dump(doc, out)
    return str(out.getvalue())


def _commented(value: Any, cmap: Any, cseq: Any) -> Any:
    if isinstance(value, dict):
        m = cmap()
        for k, v in value.items():
            m[k] = _commented(v, cmap, cseq)
        return m
    if isinstance(value, list):
        s = cseq(value)
        # Name lists stay on one line: a policy block should read at a glance.
        s.fa.set_flow_style()
        return s
    return value


def validate(text: str, path: str, names: list[str]) -> None:
    """Raise :class:`~portcullis._exceptions.PolicyError` unless ``text`` is a valid policy.

    The same parser and compiler as ``portcullis policy validate``. Keys this version cannot
    enforce count as invalid when they apply to one of ``names`` (the wrapped servers),
    because ``run`` would refuse to start them.
    """
    from portcullis._exceptions import PolicyError
    from portcullis.policy.compile import compile_policy
    from portcullis.policy.parse import parse_policy

    data = text.encode()
    model, lines = parse_policy(data, path)
    policy = compile_policy(
        model, digest=hashlib.sha256(data).hexdigest(), source=path, lines=lines
    )
    later = [k for n in names if n in policy.servers for k in policy.servers[n].unimplemented]
    if later:
        raise PolicyError(
            "configures keys this version does not enforce, so `portcullis run` would refuse "
            f"to start: {', '.join(later)}",
            path=path,
        )
