r"""Readable diffs of definitions, ``tools/list`` results and server launch entries.

Diffs are for people reading a terminal, and the text comes from a server that may be hostile:
control, format and other invisible characters (ANSI escapes, zero-width and bidi characters,
Unicode tags) are shown as ``\uXXXX`` escapes, never written raw. That both keeps the terminal
safe and shows the reviewer exactly the hidden text a rug pull would rely on.
"""

from __future__ import annotations

import difflib
import json
import unicodedata
from collections.abc import Mapping
from typing import Any

from portcullis.detect.canonical import canonical_json, definition_hash
from portcullis.pins.compare import keyed
from portcullis.pins.store import launch_id, version_changes

__all__ = ["diff_definitions", "diff_launch", "diff_tool_lists", "is_launch_entry", "tools_of"]

_HIDDEN = frozenset({"Cc", "Cf", "Co", "Cs", "Cn", "Zl", "Zp"})


def diff_definitions(old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    """A unified diff per added, removed or changed key; "" when every definition is the same.

    Both map a key (tool name, URI…) to a definition; definitions are shown as indented JSON
    in canonical key order, so only real differences appear.
    """
    chunks: list[str] = []
    for key in sorted(old.keys() | new.keys()):
        before, after = old.get(key), new.get(key)
        if key in old and key in new and definition_hash(before) == definition_hash(after):
            continue
        a = _pretty(before) if key in old else []
        b = _pretty(after) if key in new else []
        label = _safe(key)
        chunks.append(
            "".join(
                difflib.unified_diff(
                    a,
                    b,
                    fromfile=f"{label} (approved)" if key in old else "/dev/null",
                    tofile=f"{label} (current)" if key in new else "/dev/null",
                    lineterm="\n",
                )
            )
        )
    return "".join(chunks)


def tools_of(value: Any) -> list[Mapping[str, Any]]:
    """The tools in a ``tools/list`` result, a full JSON-RPC response, or a plain list."""
    if isinstance(value, Mapping) and "result" in value and "jsonrpc" in value:
        value = value["result"]
    if isinstance(value, Mapping) and "tools" in value:
        value = value["tools"]
    if not isinstance(value, list) or not all(isinstance(t, Mapping) for t in value):
        raise ValueError("expected a tools/list result, a JSON-RPC response or a list of tools")
    return value


def diff_tool_lists(a: Any, b: Any) -> tuple[str, bool]:
    """Diff two ``tools/list`` results by the pinned fields of each tool; (text, changed)."""
    old, new = keyed("tools", tools_of(a)), keyed("tools", tools_of(b))
    text = diff_definitions(old, new)
    return text, bool(text)


def diff_launch(a: Mapping[str, Any], b: Mapping[str, Any]) -> tuple[str, bool]:
    """Diff two server launch entries (command, args, env, url, …); (text, changed).

    A changed command, package, version or endpoint is a change. Environment variables and
    HTTP headers are compared by value but only their names are printed.
    """
    lines: list[str] = []
    for name in ("command", "url", "cwd", "type", "transport"):
        if a.get(name) != b.get(name):
            lines.append(f"{name}: {_show(a.get(name))} -> {_show(b.get(name))}")
    args_a, args_b = _args(a), _args(b)
    if args_a != args_b:
        lines.append(f"args: {_show(args_a)} -> {_show(args_b)}")
        if a.get("command") is not None and b.get("command") is not None:
            old = launch_id("a", str(a["command"]), args_a)
            new = launch_id("b", str(b["command"]), args_b)
            lines.extend(f"package version: {_safe(c)}" for c in version_changes(old, new))
    for section in ("env", "headers"):
        lines.extend(_secret_map_diff(section, a.get(section), b.get(section)))
    text = "".join(line + "\n" for line in lines)
    return text, bool(lines)


def is_launch_entry(value: Any) -> bool:
    """True when a JSON value looks like a server launch entry rather than a tool list."""
    return isinstance(value, Mapping) and ("command" in value or "url" in value)


def _args(entry: Mapping[str, Any]) -> list[str]:
    args = entry.get("args") or []
    if not isinstance(args, list):
        raise ValueError("a launch entry's args must be a list")
    return [str(x) for x in args]


def _secret_map_diff(section: str, a: Any, b: Any) -> list[str]:
    a = a or {}
    b = b or {}
    if not isinstance(a, Mapping) or not isinstance(b, Mapping):
        raise ValueError(f"a launch entry's {section} must be an object")
    out = [f"{section} {_safe(k)}: added" for k in sorted(b.keys() - a.keys())]
    out += [f"{section} {_safe(k)}: removed" for k in sorted(a.keys() - b.keys())]
    out += [
        f"{section} {_safe(k)}: value changed" for k in sorted(a.keys() & b.keys()) if a[k] != b[k]
    ]
    return out


def _show(value: Any) -> str:
    if value is None:
        return "(none)"
    return _safe(json.dumps(value, ensure_ascii=False))


def _pretty(value: Any) -> list[str]:
    # Round-trip through the canonical form so keys come out in RFC 8785 order.
    ordered = json.loads(canonical_json(value).decode("utf-8", "surrogatepass"))
    text = json.dumps(ordered, indent=2, ensure_ascii=False)
    return [_safe(line) + "\n" for line in text.splitlines()]


def _safe(text: str) -> str:
    """Escape every invisible or control character so the terminal shows it, not obeys it."""
    return "".join(_escape(ch) if unicodedata.category(ch) in _HIDDEN else ch for ch in text)


def _escape(ch: str) -> str:
    code = ord(ch)
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"
