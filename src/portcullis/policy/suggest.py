"""The suggested policy as YAML with a comment on every line, and its diff against the current one.

Pure: takes what :func:`portcullis.policy.learn.learn` found, the current policy file's mapping
(as read, for the keys kept unchanged) and its compiled form (for the diff), and returns text.
Values are written as plain YAML scalars when they read back as the same string, else as JSON
strings (JSON is valid YAML), so nothing in a path or a tool name can change the file's shape;
comments are cut to one line of printable characters.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, Final

from portcullis.policy.compiled import CompiledPolicy, ServerPolicy
from portcullis.policy.learn import LearnedServer

__all__ = ["LAUNCH_KEYS", "diff_policy", "render_suggestion", "suggested_servers"]

LAUNCH_KEYS: Final = ("command", "args", "cwd", "env", "url", "headers", "shared")
# Keys of a server entry the suggestion writes itself; the rest of the current entry is kept.
_LEARNED_KEYS: Final = (*LAUNCH_KEYS, "mode", "tools", "paths", "sql", "urls")
# Characters that cannot change a plain scalar's meaning; '@', '-', '~' etc. may not start one.
_PLAIN: Final = re.compile(r"[A-Za-z0-9_/.][A-Za-z0-9_/.@~+-]*")
_YAML_WORDS: Final = frozenset(
    ("y", "n", "yes", "no", "on", "off", "true", "false", "null", "~", ".nan", ".inf", "-.inf")
)
# Not printable in YAML, a YAML line break (NEL, U+2028/9), or not encodable (surrogates):
# cut from comments, escaped in quoted scalars (JSON leaves all but C0 as they are).
_UNPRINTABLE: Final = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff\ufeff\ufffe\uffff]")
_KEPT: Final = "kept from the current policy"
_MAX_COMMENT: Final = 160


class _Writer:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def line(self, indent: int, text: str, comment: str) -> None:
        self.lines.append(f"{' ' * indent}{text}  # {_one_line(comment)}")

    def note(self, indent: int, comment: str) -> None:
        self.lines.append(f"{' ' * indent}# {_one_line(comment)}")


def _one_line(text: str) -> str:
    text = _UNPRINTABLE.sub(" ", text)
    return text if len(text) <= _MAX_COMMENT else text[: _MAX_COMMENT - 1] + "…"


def scalar(value: Any) -> str:
    """A YAML scalar that reads back as ``value`` (strings only plain when unambiguous)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, int | float):
        return json.dumps(value)
    text = str(value)
    if _PLAIN.fullmatch(text) and text.lower() not in _YAML_WORDS and not _numeric(text):
        return text
    return _quoted(text)


def _quoted(value: Any) -> str:
    """JSON text (valid YAML) with everything YAML would not read back as is escaped.

    A lone surrogate has no YAML form at all: it becomes U+FFFD, so the rule names nothing.
    """
    return _UNPRINTABLE.sub(_escape_char, json.dumps(value, ensure_ascii=False))


def _escape_char(match: re.Match[str]) -> str:
    code = ord(match.group())
    return "\\ufffd" if 0xD800 <= code <= 0xDFFF else f"\\u{code:04x}"


def _numeric(text: str) -> bool:
    try:
        float(text.replace("_", ""))
    except ValueError:
        return text[:1].isdigit() or text.startswith(("-", "+", "."))  # 0x1f, 1:20, .5
    return True


def _key(name: Any) -> str:
    return scalar(str(name))


def _flow(value: Any) -> str:
    return _quoted(value)


def _emit(w: _Writer, indent: int, key: Any, value: Any, comment: str) -> None:
    """Write a kept value: mappings in block style, lists of scalars item by item."""
    if isinstance(value, Mapping) and value:
        w.line(indent, f"{_key(key)}:", comment)
        for k, v in value.items():
            _emit(w, indent + 2, k, v, comment)
    elif isinstance(value, list) and value and all(_is_scalar(v) for v in value):
        w.line(indent, f"{_key(key)}:", comment)
        for item in value:
            w.line(indent + 2, f"- {scalar(item)}", comment)
    elif isinstance(value, Mapping | list):
        w.line(indent, f"{_key(key)}: {_flow(value)}", comment)
    else:
        w.line(indent, f"{_key(key)}: {scalar(value)}", comment)


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def _glob_escape(name: str) -> str:
    # A tool literally named "a*b" must match itself only.
    return re.sub(r"([*?\[])", r"[\1]", name)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def suggested_servers(learned: Mapping[str, LearnedServer]) -> dict[str, dict[str, Any]]:
    """The learned parts of each server entry: mode, tools, roots, tables, hosts."""
    out: dict[str, dict[str, Any]] = {}
    for name, server in learned.items():
        lists: dict[str, list[str]] = {"allow": [], "confirm": [], "deny": []}
        for tool in sorted(set(server.tools) | set(server.listed)):
            action, _ = server.action(tool)
            lists[action].append(_glob_escape(tool))
        entry: dict[str, Any] = {"mode": "enforce", "tools": {"default": "deny", **lists}}
        if server.roots:
            entry["roots"] = [r.path for r in server.roots]
        if server.tables:
            entry["tables"] = sorted(_table_entries(server.tables).values())
        if server.hosts:
            entry["hosts"] = sorted(server.hosts)
        out[name] = entry
    return out


def render_suggestion(
    learned: Mapping[str, LearnedServer],
    *,
    log: str,
    current: Mapping[str, Any] | None = None,
    current_path: str | None = None,
    warnings: Sequence[str] = (),
) -> str:
    """The suggested policy file, a comment on every line.

    ``version: 1``, the current file's other top-level keys unchanged, and one entry per server:
    learned ones rewritten (launch keys and unlearned keys kept), the others kept as they are.
    """
    w = _Writer()
    w.note(0, f"Suggested by `portcullis policy suggest` from {log}")
    if current_path:
        w.note(0, f"Launch keys and everything not learned are kept from {current_path}")
    w.note(0, "Review every line before you enforce it; `portcullis policy test` replays the log")
    for warning in warnings:
        w.note(0, f"WARNING: {warning}")
    w.line(0, "version: 1", "the policy file format this portcullis reads")
    current = current or {}
    for key, value in current.items():
        if key not in ("version", "servers"):
            _emit(w, 0, key, value, _KEPT)
    w.line(0, "servers:", f"{_plural(len(learned), 'server')} learned from the log")
    kept_servers = current.get("servers") if isinstance(current.get("servers"), Mapping) else {}
    assert isinstance(kept_servers, Mapping)
    for name, server in learned.items():
        entry = kept_servers.get(name)
        _server(w, server, entry if isinstance(entry, Mapping) else {}, bool(current_path))
    for name, entry in kept_servers.items():
        if name not in learned:
            _emit(w, 2, name, entry, "not in the log (or not asked for): " + _KEPT)
    return "\n".join(w.lines) + "\n"


def _server(w: _Writer, s: LearnedServer, entry: Mapping[str, Any], have_current: bool) -> None:
    skipped = ", ".join(f"{n} {why}" for why, n in sorted(s.skipped.items()))
    span = f" from {s.first_ts} to {s.last_ts}" if s.first_ts else ""
    summary = f"{_plural(s.calls, 'call')} recorded{span}, {s.learnable} learnable"
    w.line(2, f"{_key(s.name)}:", summary + (f" (not learned from: {skipped})" if skipped else ""))
    launch = [k for k in LAUNCH_KEYS if k in entry]
    for key in launch:
        _emit(w, 4, key, entry[key], "how the server is launched: " + _KEPT)
    if not launch:
        why = "not in the current policy" if have_current else "no current policy given"
        w.note(4, f"command: ...  # {why}: add command/args (or url) to launch it, or use")
        w.note(4, f"`portcullis run --server {s.name} -- CMD ARGS...`")
    w.line(4, "mode: enforce", "the suggestion is meant to be enforced; observe keeps watching")
    _tools(w, s)
    _paths(w, s, entry.get("paths"))
    _sql(w, s, entry.get("sql"))
    _urls(w, s, entry.get("urls"))
    for key, value in entry.items():
        if key not in _LEARNED_KEYS:
            _emit(w, 4, key, value, _KEPT)


def _tools(w: _Writer, s: LearnedServer) -> None:
    names = sorted(set(s.tools) | set(s.listed))
    used = sum(1 for t in s.tools.values() if t.learnable)
    w.line(4, "tools:", f"{_plural(used, 'tool')} used, {_plural(len(s.listed), 'tool')} listed")
    w.line(6, "default: deny", "a tool not named below (or added later) is refused")
    groups: dict[str, list[tuple[str, str]]] = {"allow": [], "confirm": [], "deny": []}
    for tool in names:
        action, why = s.action(tool)
        use = s.tools.get(tool)
        if use is not None and use.example and action != "deny":
            why += f"; e.g. {use.example}"
        groups[action].append((tool, why))
    heads = {
        "allow": "used, and nothing says they change anything",
        "confirm": "used, and they write, delete, send or execute: a person approves each call",
        "deny": "never used in a learnable call",
    }
    for action in ("allow", "confirm", "deny"):
        items = groups[action]
        if not items:
            why = "every listed tool was used" if action == "deny" else f"no tool is {action}ed"
            w.line(6, f"{action}: []", why)
            continue
        w.line(6, f"{action}:", heads[action])
        for tool, why in items:
            w.line(8, f"- {scalar(_glob_escape(tool))}", why)


def _paths(w: _Writer, s: LearnedServer, current: Any) -> None:
    current = current if isinstance(current, Mapping) else {}
    if not s.roots and not current:
        if s.refused:
            w.note(4, "paths: no root could be suggested; paths seen but left out:")
            for path, why in s.refused[:10]:
                w.note(6, f"{path}: {why}")
        return
    total = sum(s.paths.values())
    w.line(4, "paths:", f"{_plural(total, 'path')} observed in learnable calls")
    if s.roots:
        w.line(6, "roots:", "the narrowest directories covering them")
        for root in s.roots:
            why = f"{_plural(root.count, 'path')}, e.g. {root.example}"
            w.line(8, f"- {scalar(root.path)}", why + (f"; {root.note}" if root.note else ""))
    elif "roots" in current:
        _emit(w, 6, "roots", current["roots"], "no path observed: " + _KEPT)
    for path, why in s.refused[:10]:
        w.note(6, f"left out: {path} ({why})")
    for key, value in current.items():
        if key != "roots":
            _emit(w, 6, key, value, _KEPT)


def _sql(w: _Writer, s: LearnedServer, current: Any) -> None:
    current = current if isinstance(current, Mapping) else {}
    if not s.tables:
        if current:
            _emit(w, 4, "sql", current, "no SQL observed: " + _KEPT)
        return
    w.line(4, "sql:", f"{_plural(sum(s.tables.values()), 'table read')} observed")
    w.line(6, "read_only: true", "only reads were learned from; writes are refused")
    w.line(6, "allow_tables:", "the tables actually read; any other is refused")
    entries = _table_entries(s.tables)
    for table, n in sorted(s.tables.items()):
        if table in entries:
            w.line(8, f"- {scalar(entries[table])}", f"read by {_plural(n, 'call')}")
        else:
            w.note(8, f"left out: {table} (read by {_plural(n, 'call')}; no exact entry for it)")
    for key, value in current.items():
        if key not in ("read_only", "allow_tables"):
            _emit(w, 6, key, value, _KEPT)


def _table_entries(tables: Mapping[str, int]) -> dict[str, str]:
    """Each learned table's exact ``allow_tables`` entry (glob characters escaped)."""
    from portcullis.detect.sql import exact_table_entry

    out: dict[str, str] = {}
    for table in tables:
        entry = exact_table_entry(table)
        if entry is not None:
            out[table] = entry
    return out


def _urls(w: _Writer, s: LearnedServer, current: Any) -> None:
    current = current if isinstance(current, Mapping) else {}
    if not s.hosts:
        if current:
            _emit(w, 4, "urls", current, "no URL observed: " + _KEPT)
        return
    w.line(4, "urls:", f"{_plural(sum(s.hosts.values()), 'URL')} fetched")
    w.line(6, "allow_hosts:", "the hosts actually fetched; any other is refused")
    for host, n in sorted(s.hosts.items()):
        w.line(8, f"- {scalar(host)}", f"fetched by {_plural(n, 'call')}")
    for key, value in current.items():
        if key != "allow_hosts":
            _emit(w, 6, key, value, _KEPT)


def diff_policy(suggested: Mapping[str, Mapping[str, Any]], current: CompiledPolicy) -> list[str]:
    """What the suggestion changes in each learned server's effective policy, one line each."""
    out: list[str] = []
    for name, new in suggested.items():
        old: ServerPolicy | None = current.servers.get(name)
        where = f"servers.{name}"
        if old is None:
            out.append(f"{where}: new server (not in the current policy)")
            old = current.defaults
        if old.mode != new["mode"]:
            out.append(f"{where}.mode: {old.mode} -> {new['mode']}")
        tools = new["tools"]
        if old.tools.default != tools["default"]:
            out.append(f"{where}.tools.default: {old.tools.default} -> {tools['default']}")
        for action in ("allow", "confirm", "deny"):
            out += _list_diff(f"{where}.tools.{action}", getattr(old.tools, action), tools[action])
        if "roots" in new:
            out += _list_diff(f"{where}.paths.roots", old.roots, new["roots"])
        if "tables" in new:
            before = old.sql.allow_tables if old.sql is not None else ()
            out += _list_diff(f"{where}.sql.allow_tables", before, new["tables"])
            if old.sql is not None and not old.sql.read_only:
                out.append(f"{where}.sql.read_only: false -> true")
        if "hosts" in new:
            before = old.urls.allow_hosts if old.urls is not None else ()
            out += _list_diff(f"{where}.urls.allow_hosts", before, new["hosts"])
    return out


def _list_diff(where: str, old: Sequence[str], new: Sequence[str]) -> list[str]:
    added = [x for x in new if x not in old]
    removed = [x for x in old if x not in new]
    if not added and not removed:
        return []
    parts = [f"+{x}" for x in added] + [f"-{x}" for x in removed]
    return [f"{where}: {' '.join(parts)}"]
