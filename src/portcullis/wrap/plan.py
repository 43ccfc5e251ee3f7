"""What wrap and unwrap change, computed without touching the disk, the keyring or a terminal.

A plan holds the new text of every client file and of the policy, the secrets to store, and a
note per server; :mod:`portcullis.wrap.apply` shows and writes it. A wrapped entry launches::

    <portcullis> run --policy <abs policy> --server <NAME> [--pass-env VAR …] -- <command> <args…>

(``<portcullis>`` is the absolute path of the executable, or ``<python> -m portcullis``). The
part after ``--`` is the original launch, so an entry describes itself: unwrap needs nothing but
the entry to restore it, and keeps every other edit made since.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from portcullis.scan.model import ConfigFile, Format, Server
from portcullis.scan.parse import Document
from portcullis.wrap.edit import EntryEditor, Shape, shape_of
from portcullis.wrap.policy import (
    Block,
    existing_defaults,
    existing_servers,
    merge,
    policy_name,
    server_block,
)

__all__ = [
    "FileChange",
    "Note",
    "Plan",
    "PolicyChange",
    "SecretMove",
    "WrapOptions",
    "Wrapped",
    "is_secret",
    "keyring_reference",
    "parse_wrapped",
    "plan_unwrap",
    "plan_wrap",
]

_OPTIONS_WITH_VALUE = ("--policy", "--server", "--pass-env")
# Whole words of a variable name (GH_TOKEN, OPENAI_API_KEY), so GIT_AUTHOR_NAME is no secret.
_SECRET_NAME = re.compile(
    r"(?:^|_)(?:TOKEN|SECRET|PASSWORD|PASSWD|PASS|API_?KEY|ACCESS_?KEY|PRIVATE_?KEY|"
    r"CREDENTIALS?|AUTH|PAT)(?:_|$)",
    re.I,
)


@dataclass(frozen=True)
class Wrapped:
    """A launch written by wrap, taken apart."""

    head: list[str]
    """``[portcullis]`` or ``[python, -m, portcullis]``."""
    policy: str | None
    server: str | None
    pass_env: list[str]
    separator: int
    """Index of wrap's ``--`` in the whole argv."""
    inner: list[str]
    """The original launch: command and arguments."""


def _head_length(argv: list[str]) -> int:
    """How many items of ``argv`` start portcullis (1, or 3 for ``python -m portcullis``)."""
    exe = os.path.basename(argv[0].replace("\\", "/")).lower().removesuffix(".exe")
    if exe == "portcullis":
        return 1
    if exe.startswith("python") and argv[1:3] == ["-m", "portcullis"]:
        return 3
    return 0


def parse_wrapped(argv: list[str]) -> Wrapped | None:
    """``argv`` taken apart if it is wrap's output, else None."""
    if not argv:
        return None
    n = _head_length(argv)
    if n == 0 or argv[n : n + 1] != ["run"]:
        return None
    head, i = argv[:n], n + 1
    values: dict[str, str] = {}
    pass_env: list[str] = []
    while i < len(argv) and argv[i] != "--":
        opt, eq, val = argv[i].partition("=")
        if opt not in _OPTIONS_WITH_VALUE:
            return None
        if not eq:
            if i + 1 >= len(argv):
                return None
            val = argv[i + 1]
            i += 1
        if opt == "--pass-env":
            pass_env.append(val)
        else:
            values[opt] = val
        i += 1
    if i + 1 >= len(argv):
        return None
    return Wrapped(
        head=head,
        policy=values.get("--policy"),
        server=values.get("--server"),
        pass_env=pass_env,
        separator=i,
        inner=argv[i + 1 :],
    )


def keyring_reference(server: str, var: str) -> str:
    """The policy reference to a secret wrap stored in the keyring."""
    return f"${{keyring:portcullis/{server}/{var}}}"


def is_secret(name: str, value: str) -> bool:
    """Whether an env value looks like a secret: a detector finding, or a secret-ish name.

    References (``${…}``, which the client or the gateway resolves) are never secrets.
    """
    if not value or "${" in value:
        return False
    from portcullis.detect.secrets import scan_secrets

    if any(f.kind == "secret" for f in scan_secrets(value)):
        return True
    return bool(_SECRET_NAME.search(name)) and len(value) >= 8


@dataclass
class Note:
    """One line of the summary; ``warn`` notes are also written to stderr."""

    text: str
    server: str | None = None
    warn: bool = False

    def __str__(self) -> str:
        where = f"{self.server}: " if self.server else ""
        return f"{'WARNING: ' if self.warn else ''}{where}{self.text}"


@dataclass
class SecretMove:
    """A secret to store in the OS keyring (wrap) or read back from it (unwrap)."""

    server: str
    var: str
    value: str = field(repr=False)

    @property
    def service(self) -> str:
        """The keyring service name."""
        return f"portcullis/{self.server}"


@dataclass
class FileChange:
    """One client file: its text before and after."""

    path: Path
    client: str
    format: Format
    # Not in the repr: a client file holds secrets, and a repr ends up in logs and tracebacks.
    before: str = field(repr=False)
    after: str = field(repr=False)
    notes: list[Note] = field(default_factory=list)
    servers: list[str] = field(default_factory=list)
    """The entries changed."""

    @property
    def changed(self) -> bool:
        """Whether the text changes."""
        return self.before != self.after


@dataclass
class PolicyChange:
    """The policy file: its text before (None: does not exist yet) and after."""

    path: Path
    before: str | None
    after: str
    added: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        """Whether the text changes."""
        return self.before != self.after


@dataclass
class Plan:
    """Everything one wrap or unwrap would change."""

    files: list[FileChange] = field(default_factory=list)
    policy: PolicyChange | None = None
    secrets: list[SecretMove] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)
    masked: set[str] = field(default_factory=set, repr=False)
    """Secret values :meth:`diff` must not show, moved or not."""

    @property
    def changed(self) -> bool:
        """Whether anything would be written."""
        return any(f.changed for f in self.files) or bool(self.policy and self.policy.changed)

    def diff(self) -> str:
        """Unified diffs of every changed file (client files first, then the policy)."""
        out: list[str] = []
        for f in self.files:
            if f.changed:
                out.append(_diff(f.before, f.after, str(f.path)))
        if self.policy is not None and self.policy.changed:
            out.append(_diff(self.policy.before or "", self.policy.after, str(self.policy.path)))
        return _mask("".join(out), self.masked | {m.value for m in self.secrets})


def _mask(text: str, values: set[str]) -> str:
    """Hide secrets in a diff shown on a terminal.

    First the values wrap knows are secret, then whatever the detector finds (a token in an
    argument, which wrap leaves where it was).
    """
    from portcullis.detect.redact import redact_text
    from portcullis.detect.secrets import scan_secrets

    for value in sorted(_written_forms(values), key=len, reverse=True):
        text = text.replace(value, "[REDACTED:secret]")
    findings = [f for f in scan_secrets(text) if f.kind == "secret"]
    return redact_text(text, findings)


def _written_forms(values: set[str]) -> set[str]:
    """Each secret as the diff may show it.

    As is, escaped in a JSON (or YAML "…") string, and line by line when it spans lines (a
    YAML block scalar, a PEM key).
    """
    import json

    forms: set[str] = set()
    for value in values:
        if not value:
            continue
        forms |= {value, json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1]}
        forms.add(value.replace("'", "''"))  # a YAML '…' string
        # Short lines (a PEM "-----END") would mask ordinary text too; they are no secret.
        forms |= {line for line in value.splitlines() if len(line.strip()) >= 8}
    return forms


def _file_secrets(cf: ConfigFile) -> set[str]:
    """Secret-looking env and header values of every entry of a file, touched or not.

    A diff's context lines may show any of them.
    """
    found: set[str] = set()
    for server in cf.servers:
        for var, value in [*server.env.items(), *server.headers.items()]:
            if isinstance(value, str) and is_secret(var, value):
                found.add(value)
    return found


def _diff(before: str, after: str, name: str) -> str:
    lines = difflib.unified_diff(
        before.splitlines(keepends=True),
        after.splitlines(keepends=True),
        fromfile=f"{name} (now)" if before else "/dev/null",
        tofile=f"{name} (new)",
    )
    text = "".join(
        line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in lines
    )
    return text


@dataclass(frozen=True)
class WrapOptions:
    """Everything wrap needs to know about this machine, decided by the caller."""

    gateway: list[str]
    """The portcullis command: ``[abs exe]`` or ``[python, -m, portcullis]``."""
    policy_path: Path
    policy_text: str | None
    """The policy file's text now (None: it does not exist)."""
    home: str
    servers: frozenset[str] | None = None
    """Only these entry names (None: all)."""
    keyring: bool = False
    """A usable keyring backend exists, so secrets can move there."""
    sandbox: bool = False
    """The sandbox runs on this machine."""
    cwd: str | None = None
    """The current directory: the project of a client file found inside it."""


def _remote(raw: dict[str, object]) -> bool:
    return any(k in raw for k in ("url", "httpUrl", "serverUrl", "uri")) or raw.get("type") in (
        "http",
        "sse",
        "streamable-http",
        "streamable_http",
        "remote",
    )


def _selected(server: Server, names: frozenset[str] | None) -> bool:
    return names is None or server.name in names


def plan_wrap(files: list[ConfigFile], options: WrapOptions) -> Plan:
    """Plan routing every chosen stdio server of ``files`` through ``portcullis run``."""
    plan = Plan()
    existing = existing_servers(options.policy_text)
    blocks: dict[str, Block] = {}
    launches: dict[str, str] = {}
    for cf in files:
        change = FileChange(cf.path, cf.client, cf.format, cf.text, cf.text)
        plan.files.append(change)
        plan.masked |= _file_secrets(cf)
        text, doc = cf.text, None
        for server in cf.servers:
            if not _selected(server, options.servers):
                continue
            editor = EntryEditor(text, cf.format, server.pointer, doc)
            text = _wrap_one(editor, server, cf, options, plan, change, existing, blocks, launches)
            doc = editor.parsed
        change.after = text
    plan.notes += _unknown(files, options.servers)
    if blocks:
        path = options.policy_path
        after = merge(options.policy_text, list(blocks.values()))
        plan.policy = PolicyChange(path, options.policy_text, after, list(blocks))
    return plan


def _wrap_one(
    editor: EntryEditor,
    server: Server,
    cf: ConfigFile,
    options: WrapOptions,
    plan: Plan,
    change: FileChange,
    existing: dict[str, dict[str, str]],
    blocks: dict[str, Block],
    launches: dict[str, str],
) -> str:
    name = server.name
    raw = editor.entry()
    shape = shape_of(raw)
    argv = editor.launch(shape)
    if argv is None:
        if _remote(raw) or server.transport != "stdio":
            change.notes.append(
                Note("skipped: remote servers: use `portcullis serve` — not yet available", name)
            )
        else:
            change.notes.append(Note("skipped: the entry has no command to wrap", name))
        return editor.text
    if parse_wrapped(argv) is not None:
        change.notes.append(Note("already wrapped; left as it is", name))
        return editor.text
    if _head_length(argv):
        # Set up by hand (`portcullis run npx …`): wrapping it would start a gateway in front of
        # a gateway, and unwrap would not recognise the inner one.
        change.notes.append(Note("already runs portcullis; left as it is", name))
        return editor.text
    env_value = editor.get(shape.env)
    env = (
        {k: v for k, v in env_value.items() if isinstance(v, str)}
        if isinstance(env_value, dict)
        else {}
    )
    # Entries of the same name share a block only when they launch the same thing the same
    # way (one server in two clients); otherwise each gets its own name.
    launch = repr((argv, sorted(env.items())))
    pname = policy_name(name)
    base, n = pname, 2
    own = {str(k) for k in env_value} if isinstance(env_value, dict) else set()
    borrowed: list[str] = []
    while (pname in launches and launches[pname] != launch) or (
        pname in existing and not set(existing[pname]) <= own
    ):
        if pname in existing and not set(existing[pname]) <= own and not borrowed:
            borrowed = [pname, *sorted(set(existing[pname]) - own)]
        pname, n = f"{base}-{n}", n + 1
    if borrowed:
        # An existing block hands its server variables (often keyring secrets). An entry that
        # does not set them itself may not be the server the block is for: a project's entry
        # named "github" must not receive the user's GitHub token.
        change.notes.append(
            Note(
                f"the policy's servers.{borrowed[0]} passes {', '.join(borrowed[1:])}, which this "
                f"entry does not set: it gets servers.{pname} instead (point --server at "
                f"{borrowed[0]} yourself if that block is meant for it)",
                name,
                warn=True,
            )
        )
    new_block = pname not in existing
    moved: dict[str, str] = {}
    original, secrets_before, notes_before = editor.text, len(plan.secrets), len(change.notes)
    original_doc = editor.doc
    for var, value in env.items():
        if not is_secret(var, value):
            continue
        plan.masked.add(value)
        ref = keyring_reference(pname, var)
        if not new_block and existing[pname].get(var) == ref and options.keyring:
            # The user's block already reads it from the keyring (an earlier wrap): move it.
            moved[var] = ref
            plan.secrets.append(SecretMove(pname, var, value))
            change.notes.append(
                Note(f"{var}: moved to the OS keyring (service portcullis/{pname})", name)
            )
        elif not new_block:
            change.notes.append(
                Note(
                    f"{var} looks like a secret and stays in the client file: the policy already "
                    f"has servers.{pname}, which wrap does not change (add "
                    f"env: {{{var}: {keyring_reference(pname, var)!r}}} there yourself)",
                    name,
                    warn=True,
                )
            )
        elif not options.keyring:
            change.notes.append(
                Note(
                    f"{var} looks like a secret and STAYS IN PLAIN TEXT in {cf.path}: no usable "
                    "OS keyring was found (install a keyring backend, then run unwrap and wrap "
                    "again to move it)",
                    name,
                    warn=True,
                )
            )
        else:
            moved[var] = keyring_reference(pname, var)
            plan.secrets.append(SecretMove(pname, var, value))
            change.notes.append(
                Note(
                    f"{var}: moved to the OS keyring (service portcullis/{pname}); the policy "
                    "passes it to the server",
                    name,
                )
            )
    _warn_secret_args(argv, name, change)
    if "envFile" in raw:
        # VS Code loads these into the gateway's environment, and `run` passes on only the
        # variables it is told about: the server would silently lose them.
        change.notes.append(
            Note(
                "its envFile variables do not reach the server through the gateway: add "
                "`--pass-env NAME` before `--` for each, or an `env:` line in the policy block",
                name,
                warn=True,
            )
        )
    # Every variable of the entry (whatever its type) must reach the server, as before wrap.
    names = list(env_value) if isinstance(env_value, dict) else []
    pass_env = [str(v) for v in names if v not in moved]
    prefix = ["run", "--policy", str(options.policy_path), "--server", pname]
    for var in pass_env:
        # `--pass-env -x` would read as a missing value followed by an option: `run` would fail.
        prefix += [f"--pass-env={var}"] if var.startswith("-") else ["--pass-env", var]
    prefix.append("--")
    kept_env = (
        {k: v for k, v in env_value.items() if k not in moved}
        if isinstance(env_value, dict)
        else {}
    )
    try:
        if moved:
            editor.remove_env(shape, list(moved))
        editor.wrap(shape, options.gateway, prefix)
        problem = _check_edit(
            original_doc,
            editor.doc,
            server.pointer,
            [*options.gateway, *prefix, *argv],
            kept_env,
        )
    except Exception as exc:  # an edit bug on an odd file must never write a broken file
        problem = f"the edit failed ({type(exc).__name__})"
    if problem is not None:
        del plan.secrets[secrets_before:], change.notes[notes_before:]
        change.notes.append(Note(f"not wrapped: {problem}; edit it by hand", name, warn=True))
        return original
    change.servers.append(name)
    if pname in blocks or not new_block:
        if not new_block:
            change.notes.append(
                Note(f"wrapped; the policy already has servers.{pname}, used as it is", name)
            )
        else:
            change.notes.append(Note(f"wrapped; shares servers.{pname} in the policy", name))
        return editor.text
    launches[pname] = launch
    origin = f"{name} in {cf.path}"
    block = server_block(
        pname,
        argv,
        home=options.home,
        project=server.project or _project_of(cf.path, options.cwd),
        sandbox=options.sandbox,
        env=moved,
        origin=origin,
        inherit=existing_defaults(options.policy_text),
    )
    blocks[pname] = block
    tools = block.value.get("tools")
    if tools is None:
        rules = "tool rules from your policy's defaults"
    elif tools["allow"]:
        rules = (
            "read-looking tools allowed, write/delete/exec-looking tools and all others need "
            "confirmation"
        )
    else:
        rules = "every tool needs confirmation"
    change.notes.append(Note(f"wrapped as servers.{pname}: {rules}", name))
    for text in block.notes:
        change.notes.append(Note(text, name, warn=text.startswith("roots not narrowed")))
    return editor.text


def _blank(value: Any, parts: list[str]) -> Any:
    """``value`` with the item at ``parts`` replaced by None (copied along the path only)."""
    if not parts:
        return None
    head, rest = parts[0], parts[1:]
    if isinstance(value, dict) and head in value:
        return {**value, head: _blank(value[head], rest)}
    if isinstance(value, list) and head.isdigit() and int(head) < len(value):
        i = int(head)
        return [*value[:i], _blank(value[i], rest), *value[i + 1 :]]
    return value


def _check_edit(
    before: Document, after: Document, pointer: str, argv: list[str], env: dict[str, Any]
) -> str | None:
    """Why the edited text is not exactly the intended change (None when it is).

    The intended change: this entry launches ``argv`` with ``env``, its other keys unchanged,
    and nothing else in the file changes in value. Text edits at parse spans can reach
    further than the entry: a YAML alias (``args: *common``) shares the anchor's node, so an
    edit through it would rewrite another server too.
    """
    old, new = before.value, after.value
    parts = [t.replace("~1", "/").replace("~0", "~") for t in pointer.split("/")[1:]]
    if _blank(old, parts) != _blank(new, parts):
        return "the edit would change other entries too (YAML anchors or aliases?)"
    editor = EntryEditor(after.text, after.format, pointer, after)
    shape = shape_of(editor.entry())
    got_env = editor.get(shape.env)
    if editor.launch(shape) != argv:
        return "the edited entry would not launch as intended"
    if (got_env or {}) != env:
        return "its environment would not come out as intended"
    launch_keys = {shape.command.split("/")[1], (shape.args or "/").split("/")[1]}
    launch_keys.add(shape.env.split("/")[1])
    old_entry, new_entry = (
        EntryEditor(before.text, before.format, pointer, before).entry(),
        editor.entry(),
    )
    if {k: v for k, v in old_entry.items() if k not in launch_keys} != {
        k: v for k, v in new_entry.items() if k not in launch_keys
    }:
        return "the edit would change other keys of the entry"
    return None


def _project_of(path: Path, cwd: str | None) -> str | None:
    """``cwd`` when the client file lies inside it (a project's own configuration)."""
    if cwd is None:
        return None
    return cwd if Path(os.path.abspath(path)).is_relative_to(cwd) else None


def _warn_secret_args(argv: list[str], name: str, change: FileChange) -> None:
    from portcullis.detect.secrets import scan_secrets

    for i, arg in enumerate(argv[1:], start=1):
        found = [f for f in scan_secrets(arg) if f.kind == "secret"]
        if found:
            change.notes.append(
                Note(
                    f"argument {i} holds a secret ({found[0].evidence}); wrap cannot move an "
                    "argument out of the file: pass it through an environment variable instead",
                    name,
                    warn=True,
                )
            )


def plan_unwrap(
    files: list[ConfigFile],
    *,
    servers: frozenset[str] | None = None,
    restore: Callable[[str, str], str | None] | None = None,
    leave_secrets: bool = False,
    policy_refs: Callable[[str, str], dict[str, str]] | None = None,
) -> Plan:
    """Plan restoring every chosen wrapped entry's original command and arguments.

    ``policy_refs(policy_path, server)`` returns the ``${keyring:portcullis/…}`` references the
    entry's policy block holds (secrets wrap moved). With ``restore`` (a keyring lookup:
    service, name → value) they are written back into the entry's env; with ``leave_secrets``
    the entry is unwrapped without them; otherwise such an entry is left wrapped, with a note,
    because unwrapping it would silently start the server without its credentials.
    """
    plan = Plan()
    for cf in files:
        change = FileChange(cf.path, cf.client, cf.format, cf.text, cf.text)
        plan.files.append(change)
        plan.masked |= _file_secrets(cf)
        text, doc = cf.text, None
        for server in cf.servers:
            if not _selected(server, servers):
                continue
            editor = EntryEditor(text, cf.format, server.pointer, doc)
            plan.masked |= _unwrap_one(editor, server, change, restore, leave_secrets, policy_refs)
            text, doc = editor.text, editor.parsed
        change.after = text
    plan.notes += _unknown(files, servers)
    return plan


def _unknown(files: list[ConfigFile], names: frozenset[str] | None) -> list[Note]:
    """A note for each ``--server`` name that no entry of these files has (a typo?)."""
    have = {s.name for cf in files for s in cf.servers}
    return [
        Note(f"no server named {n!r} was found", warn=True) for n in sorted((names or set()) - have)
    ]


def _unwrap_one(
    editor: EntryEditor,
    server: Server,
    change: FileChange,
    restore: Callable[[str, str], str | None] | None,
    leave_secrets: bool,
    policy_refs: Callable[[str, str], dict[str, str]] | None,
) -> set[str]:
    """Unwrap one entry; return the secret values written back (the diff must hide them)."""
    name = server.name
    shape: Shape = shape_of(editor.entry())
    argv = editor.launch(shape)
    wrapped = parse_wrapped(argv) if argv else None
    if wrapped is None:
        looks = argv is not None and any("portcullis" in a for a in argv[:4])
        if looks:
            change.notes.append(
                Note("no longer looks like wrap's output (edited since?); left alone", name)
            )
        return set()
    refs: dict[str, str] = {}
    if policy_refs is not None and wrapped.policy and wrapped.server:
        # Only the reference wrap itself writes (the entry's own service, the variable's own
        # name): the policy file is named by the entry, which may come from a hostile
        # project, and --restore-secrets must never copy another server's secret into it.
        refs = {
            var: ref
            for var, ref in policy_refs(wrapped.policy, wrapped.server).items()
            if ref == keyring_reference(wrapped.server, var)
        }
    env_value = editor.get(shape.env)
    present = set(env_value) if isinstance(env_value, dict) else set()
    missing = {var: ref for var, ref in refs.items() if var not in present}
    values: dict[str, str] = {}
    if missing:
        if restore is not None:
            for var, ref in missing.items():
                service, _, key = ref[len("${keyring:") : -1].rpartition("/")
                value = restore(service, key)
                if value is None:
                    change.notes.append(
                        Note(
                            f"{var}: not found in the keyring ({service}); left wrapped", name, True
                        )
                    )
                    return set()
                values[var] = value
        elif not leave_secrets:
            change.notes.append(
                Note(
                    f"left wrapped: its secrets {', '.join(missing)} live in the OS keyring and "
                    "the unwrapped entry would start without them. Use --restore-secrets to write "
                    "them back into the file, or --leave-secrets to unwrap anyway",
                    name,
                    warn=True,
                )
            )
            return set()
    original, original_doc = editor.text, editor.doc
    kept_env = dict(env_value) if isinstance(env_value, dict) else {}
    try:
        editor.unwrap(shape, wrapped.separator)
        if values:
            editor.add_env(shape, values)
        problem = _check_edit(
            original_doc,
            editor.doc,
            server.pointer,
            wrapped.inner,
            {**kept_env, **values},
        )
    except Exception as exc:  # an edit bug on an odd file must never write a broken file
        problem = f"the edit failed ({type(exc).__name__})"
    if problem is not None:
        editor.reset(original)
        change.notes.append(Note(f"not unwrapped: {problem}; edit it by hand", name, warn=True))
        return set()
    if values:
        change.notes.append(
            Note(f"secrets {', '.join(values)} written back from the keyring (in plain text)", name)
        )
    elif missing:
        change.notes.append(
            Note(
                f"unwrapped WITHOUT {', '.join(missing)} (still in the OS keyring, service "
                f"portcullis/{wrapped.server})",
                name,
                warn=True,
            )
        )
    change.servers.append(name)
    change.notes.append(Note("unwrapped: runs directly again", name))
    return set(values.values())
