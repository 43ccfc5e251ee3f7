"""Learning a least-privilege policy from audit records (``portcullis policy suggest``).

Pure functions over records (dicts as the audit log holds them, see docs/audit.md); the caller
reads the log and passes the records, the home directory and the protected paths in. What is
learned, and from which calls:

- Only *learnable* calls teach: a ``tools/call``, ``prompts/get`` or ``resources/read`` whose
  decision was ``allow``, or ``confirm`` that a person approved, or ``confirm`` forwarded because
  observe mode relaxed approvals; and that carried no injection finding, neither on the call nor
  on its result. A would-be denial (``enforced: false``) never teaches: a traversal attempt
  recorded in observe mode must not widen the roots.
- Tools used → ``allow``, or ``confirm`` when the name or the annotations say the tool writes,
  deletes, sends or executes; tools listed (``tools/list`` records) but never used → ``deny``;
  ``default: deny``.
- ``paths.roots``: the narrowest directories covering the observed paths; never ``/``, a home
  directory, an ancestor of the home directory, or a protected path (nor an ancestor of the state
  directory or the policy file) -- narrower roots are kept instead.
- ``sql``: read-only with the tables read; ``urls.allow_hosts``: the hosts fetched.

The YAML rendering with a comment on every line is in :mod:`portcullis.policy._suggest_yaml`.
"""

from __future__ import annotations

import os
import posixpath
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

__all__ = [
    "CALL_METHODS",
    "LearnedServer",
    "RootChoice",
    "ToolInfo",
    "ToolUse",
    "covering_roots",
    "injection_rules",
    "learn",
    "not_learnable",
    "root_refusal",
    "subject_of",
    "tool_action",
    "tool_inventory",
]

CALL_METHODS: Final = ("tools/call", "prompts/get", "resources/read")
_SUBJECT_FIELD: Final = {
    "tools/call": "tool",
    "prompts/get": "prompt",
    "resources/read": "resource",
}
# Finding rules that mean "this text may be instructions to the model": injection detectors and
# the hidden-character (unicode) rules that carry smuggled instructions.
_INJECTION_PREFIXES: Final = ("injection", "unicode-")
# Rule families of the argument guards: a call decided by one of them was a (would-be) denial.
_GUARD_RULES: Final = ("paths.", "sql.", "urls.", "arguments.", "constraints.")
# Name tokens that say a tool changes something: writes, deletes, sends or executes.
WRITE_VERBS: Final = frozenset(
    {
        "add", "append", "apply", "commit", "create", "delete", "deploy", "drop", "edit", "email",
        "eval", "exec", "execute", "insert", "install", "invoke", "kill", "merge", "mkdir",
        "modify", "move", "mv", "overwrite", "patch", "post", "publish", "push", "put", "remove",
        "rename", "replace", "reset", "rm", "run", "save", "send", "set", "shell", "spawn",
        "terminate", "truncate", "update", "upload", "write",
    }
)  # fmt: skip
_CAMEL: Final = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_SPLIT: Final = re.compile(r"[^A-Za-z0-9]+")
_HOME_LIKE: Final = re.compile(r"/(?:home|Users)/[^/]+")
_DIR_HINTS: Final = ("dir", "list", "tree", "search", "find", "ls", "glob")


@dataclass(frozen=True, slots=True)
class ToolInfo:
    """A tool as the server listed it (the latest listing in the log wins)."""

    name: str
    annotations: Mapping[str, Any] = field(default_factory=dict)
    input_schema: Any = None


@dataclass(slots=True)
class ToolUse:
    """What the log says about one tool of one server."""

    name: str
    learnable: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    example: str | None = None  # a redacted argument value of a learnable call
    confirmed: int = 0  # learnable calls whose decision was confirm


@dataclass(frozen=True, slots=True)
class RootChoice:
    """One suggested root: the directory, how many observed paths it covers, an example."""

    path: str
    count: int
    example: str
    note: str = ""


@dataclass(slots=True)
class LearnedServer:
    """Everything learned about one server from the log."""

    name: str
    calls: int = 0  # call records (tools/call, prompts/get, resources/read) seen
    learnable: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    tools: dict[str, ToolUse] = field(default_factory=dict)
    listed: dict[str, ToolInfo] = field(default_factory=dict)
    paths: Counter[str] = field(default_factory=Counter)
    path_tools: dict[str, str] = field(default_factory=dict)  # path -> a tool that used it
    tables: Counter[str] = field(default_factory=Counter)
    hosts: Counter[str] = field(default_factory=Counter)
    roots: list[RootChoice] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)  # (path, why not a root)
    first_ts: str | None = None
    last_ts: str | None = None

    def action(self, tool: str) -> tuple[str, str]:
        """The suggested rule for ``tool`` and why: allow, confirm or deny."""
        use = self.tools.get(tool)
        info = self.listed.get(tool)
        if use is None or use.learnable == 0:
            if use is not None and use.skipped:
                reasons = ", ".join(f"{n} {why}" for why, n in sorted(use.skipped.items()))
                return "deny", f"never used in a learnable call ({reasons})"
            return "deny", "listed by the server, never used"
        action, why = tool_action(tool, info.annotations if info else {})
        calls = f"{use.learnable} call{'' if use.learnable == 1 else 's'}"
        if use.skipped:
            reasons = ", ".join(f"{n} {why}" for why, n in sorted(use.skipped.items()))
            calls += f" (not learned from: {reasons})"
        if action == "allow" and use.confirmed:
            return "confirm", f"{calls}, {use.confirmed} of them needed a person's approval"
        return action, f"{calls}; {why}"


def subject_of(record: Mapping[str, Any]) -> str | None:
    """The tool name, prompt name or resource URI a call record is about."""
    value = record.get(_SUBJECT_FIELD.get(str(record.get("method")), "tool"))
    return value if isinstance(value, str) else None


def injection_rules(findings: Any) -> list[str]:
    """The injection (and hidden-character) rules in a record's ``findings`` counts.

    Findings that are not a mapping (an odd or tampered record) count as a finding.
    """
    if findings is None:
        return []
    if not isinstance(findings, Mapping):
        return ["malformed-findings"]  # not the log's form: cannot show there was none
    return sorted(str(r) for r in findings if str(r).startswith(_INJECTION_PREFIXES))


def not_learnable(call: Mapping[str, Any], result: Mapping[str, Any] | None) -> str | None:
    """Why a call record must not teach the policy, or None when it may.

    ``result`` is the s2c record of the call's result, when the log has one.
    """
    decision = call.get("decision")
    if str(call.get("rule", "")).startswith(_GUARD_RULES):
        # An argument guard refused it: observe mode forwarded it, or (a confirm tool, approvals
        # kept) a person let it through; either way it is what the policy would deny.
        return (
            "would-be denial" if decision != "deny" or call.get("enforced") is False else "denied"
        )
    if decision == "deny":
        return "would-be denial" if call.get("enforced") is False else "denied"
    if decision == "confirm":
        approval = call.get("approval")
        outcome = approval.get("outcome") if isinstance(approval, Mapping) else None
        relaxed = call.get("enforced") is False and outcome is None
        if outcome != "approved" and not relaxed:
            return "not approved"
    elif decision != "allow":
        return f"decision {decision}"
    rules = injection_rules(call.get("findings"))
    if result is not None:
        rules += injection_rules(result.get("findings"))
        if str(result.get("rule", "")).startswith("injection"):
            rules.append(str(result.get("rule")))
    if rules:
        return "injection finding"
    return None


def tool_action(name: str, annotations: Mapping[str, Any]) -> tuple[str, str]:
    """``("confirm", why)`` for a tool that writes, deletes, sends or executes, else allow.

    Annotations are the server's own claims, so they can only make a tool stricter: a
    ``readOnlyHint: true`` does not excuse a name that says ``delete``.
    """
    if annotations.get("destructiveHint") is True:
        return "confirm", "annotations: destructiveHint true"
    if annotations.get("readOnlyHint") is False:
        return "confirm", "annotations: readOnlyHint false (it changes things)"
    tokens = {t.lower() for part in _SPLIT.split(name) for t in _CAMEL.split(part) if t}
    verbs = sorted(tokens & WRITE_VERBS)
    if verbs:
        return "confirm", f"its name says it changes things ({', '.join(verbs)})"
    if annotations.get("readOnlyHint") is True:
        return "allow", "read-only (annotations: readOnlyHint true)"
    return "allow", "nothing says it changes anything"


def tool_inventory(records: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, ToolInfo]]:
    """Server name → tool name → the tool as last listed (``observed.tools`` of tools/list)."""
    out: dict[str, dict[str, ToolInfo]] = {}
    for rec in records:
        if rec.get("method") != "tools/list" or rec.get("direction") != "s2c":
            continue
        observed = rec.get("observed")
        tools = observed.get("tools") if isinstance(observed, Mapping) else None
        if not isinstance(tools, list):
            continue
        known = out.setdefault(str(rec.get("server", "")), {})
        for tool in tools:
            if isinstance(tool, Mapping) and isinstance(tool.get("name"), str):
                ann = tool.get("annotations")
                known[tool["name"]] = ToolInfo(
                    tool["name"],
                    dict(ann) if isinstance(ann, Mapping) else {},
                    tool.get("input_schema"),
                )
    return out


def learn(
    records: Iterable[Mapping[str, Any]],
    *,
    server: str | None = None,
    since: str | None = None,
    home: str | None = None,
    protected: Sequence[str] = (),
    keep_out: Sequence[str] = (),
    is_dir: Callable[[str], bool | None] | None = None,
) -> dict[str, LearnedServer]:
    """Learn every server of the log (or only ``server``) from its records, oldest first.

    ``since`` is a timestamp in the log's form (see ``portcullis.audit.parse_time``): calls
    before it are ignored; the tool listings of the whole log still say which tools exist.
    ``home``, ``protected`` and ``keep_out`` are what roots must never be or hold (see
    :func:`root_refusal`); ``is_dir`` says whether an observed path is a directory (None:
    unknown, then another observed path below it or the tool's name decides).
    """
    servers: dict[str, LearnedServer] = {}
    pending: dict[tuple[Any, ...], Mapping[str, Any]] = {}
    results: dict[int, Mapping[str, Any]] = {}
    calls: list[Mapping[str, Any]] = []
    listings: list[Mapping[str, Any]] = []
    for rec in records:
        name = rec.get("server")
        if not isinstance(name, str) or (server is not None and name != server):
            continue
        method = rec.get("method")
        if method == "tools/list":
            listings.append(rec)
            continue
        if method not in CALL_METHODS:
            continue
        key = (rec.get("session"), name, _hashable(rec.get("id")), method)
        if rec.get("direction") == "c2s":
            ts = rec.get("ts")
            if since is not None and (not isinstance(ts, str) or ts < since):
                pending.pop(key, None)
                continue
            pending[key] = rec
            calls.append(rec)
        elif rec.get("direction") == "s2c":
            call = pending.pop(key, None)
            if call is not None:
                results[id(call)] = rec
    inventory = tool_inventory(listings)
    for name, tools in inventory.items():
        servers.setdefault(name, LearnedServer(name)).listed.update(tools)
    for rec in calls:
        name = str(rec["server"])
        _take(servers.setdefault(name, LearnedServer(name)), rec, results.get(id(rec)))
    for learned in servers.values():
        learned.roots, learned.refused = covering_roots(
            learned.paths,
            home=home,
            protected=protected,
            keep_out=keep_out,
            is_dir=is_dir,
            dir_tools=learned.path_tools,
        )
    return servers


def _hashable(value: Any) -> Any:
    return value if isinstance(value, str | int | float | bool | None) else repr(value)


def _take(learned: LearnedServer, rec: Mapping[str, Any], result: Mapping[str, Any] | None) -> None:
    learned.calls += 1
    ts = rec.get("ts")
    if isinstance(ts, str):
        learned.first_ts = ts if learned.first_ts is None else min(learned.first_ts, ts)
        learned.last_ts = ts if learned.last_ts is None else max(learned.last_ts, ts)
    method = rec.get("method")
    subject = subject_of(rec)
    use = None
    if method == "tools/call" and subject is not None:
        use = learned.tools.setdefault(subject, ToolUse(subject))
    why = not_learnable(rec, result)
    if why is not None:
        learned.skipped[why] += 1
        if use is not None:
            use.skipped[why] += 1
        return
    learned.learnable += 1
    observed = rec.get("observed")
    obs: Mapping[str, Any] = observed if isinstance(observed, Mapping) else {}
    if use is not None:
        use.learnable += 1
        if rec.get("decision") == "confirm":
            use.confirmed += 1
        if use.example is None:
            use.example = _example(obs.get("inputs"))
    for path in _strings(obs.get("paths")):
        learned.paths[path] += 1
        learned.path_tools.setdefault(path, subject or "")
    for table in _strings(obs.get("tables")):
        learned.tables[table.lower()] += 1
    for host in _strings(obs.get("hosts")):
        learned.hosts[host.lower()] += 1


def _strings(value: Any) -> list[str]:
    return [v for v in value if isinstance(v, str) and v] if isinstance(value, list) else []


def _example(inputs: Any) -> str | None:
    if not isinstance(inputs, Mapping) or not inputs:
        return None
    pointer, value = next(iter(inputs.items()))
    return f"{pointer}={value}"


# ---- roots ----------------------------------------------------------------------------------


def _inside(path: str, root: str) -> bool:
    return path == root or root == "/" or path.startswith(root.rstrip("/") + "/")


def root_refusal(
    path: str,
    *,
    home: str | None,
    protected: Sequence[str] = (),
    keep_out: Sequence[str] = (),
) -> str | None:
    """Why ``path`` must not be a root, or None. Lexical: no file system access.

    Refused: ``/``; a home directory (``$HOME``, ``/root``, ``/home/USER``, ``/Users/USER``),
    ``/home`` or ``/Users``, or an ancestor of ``home``; a protected path or anything inside
    one; an ancestor of a ``keep_out`` path (the state directory, the policy file, the audit
    log: a root holding them would lean on the guard's exceptions alone). Relative protected
    entries (``.mcp.json``) refuse a root that is one of them or lies inside one.
    """
    if path == "/":
        return "it is the whole file system"
    homes = {"/root"}
    if home:
        homes.add(posixpath.normpath(home))
    if path in homes or _HOME_LIKE.fullmatch(path):
        return "it is a home directory"
    if path in ("/home", "/Users"):
        return "it holds the home directories"
    if home and _inside(posixpath.normpath(home), path):
        return "it holds a home directory"
    for entry in protected:
        if entry.startswith(("/", "~")):
            prot = posixpath.normpath(os.path.expanduser(entry))
            if _inside(path, prot):
                return f"it is a protected path ({prot})"
        else:
            rel = "/".join(c for c in entry.split("/") if c)
            if rel and (path.endswith("/" + rel) or f"/{rel}/" in path):
                return f"it is a protected client configuration ({rel})"
    for entry in keep_out:
        out = posixpath.normpath(os.path.expanduser(entry))
        if _inside(out, path):
            return f"it holds {out}, which guarded tools must never reach"
    return None


def covering_roots(
    paths: Mapping[str, int],
    *,
    home: str | None,
    protected: Sequence[str] = (),
    keep_out: Sequence[str] = (),
    is_dir: Callable[[str], bool | None] | None = None,
    dir_tools: Mapping[str, str] | None = None,
) -> tuple[list[RootChoice], list[tuple[str, str]]]:
    """The narrowest directories covering ``paths`` (path → count), and the paths left out.

    A path's candidate is the path itself when it is a directory, else its parent. A candidate
    that :func:`root_refusal` refuses falls back to the path itself (a file can be a root);
    when that is refused too, the path is left out with the reason. Candidates inside another
    are merged into it.
    """
    candidates: dict[str, str] = {}  # candidate -> note
    refused: list[tuple[str, str]] = []
    for path in sorted(paths):
        norm = _normpath(path)
        if not norm.startswith("/"):
            refused.append((path, "not an absolute path"))
            continue
        directory = _is_directory(norm, paths, is_dir, (dir_tools or {}).get(path, ""))
        candidate = norm if directory else posixpath.dirname(norm)
        why = root_refusal(candidate, home=home, protected=protected, keep_out=keep_out)
        note = ""
        if why is not None and candidate != norm:
            note = f"narrower than {candidate}: {why}"
            candidate = norm
            why = root_refusal(candidate, home=home, protected=protected, keep_out=keep_out)
        if why is not None:
            refused.append((norm, why))
            continue
        candidates.setdefault(candidate, note)
    roots = [c for c in sorted(candidates, key=len) if c]
    kept: list[str] = []
    for root in roots:
        if not any(_inside(root, k) for k in kept):
            kept.append(root)
    counts: Counter[str] = Counter()
    examples: dict[str, str] = {}
    for path, n in paths.items():
        norm = _normpath(path)
        for root in kept:
            if _inside(norm, root):
                counts[root] += n
                examples.setdefault(root, norm)
                break
    choices = [
        RootChoice(root, counts[root], examples.get(root, root), candidates.get(root, ""))
        for root in sorted(kept)
    ]
    return choices, refused


def _normpath(path: str) -> str:
    # POSIX keeps a leading "//" (implementation-defined); Linux and macOS read it as "/".
    norm = posixpath.normpath(path)
    return "/" + norm.lstrip("/") if norm.startswith("//") else norm


def _is_directory(
    path: str, paths: Mapping[str, int], is_dir: Callable[[str], bool | None] | None, tool: str
) -> bool:
    known = is_dir(path) if is_dir is not None else None
    if known is not None:
        return known
    # Another observed path below it: it is a directory, whatever the file system says now.
    prefix = path.rstrip("/") + "/"
    if any(p.startswith(prefix) for p in paths):
        return True
    # Unknown here (the log may come from another machine): the tool's name decides.
    return any(hint in tool.lower() for hint in _DIR_HINTS)
