"""Format-preserving edits of one server entry: read and replace its launch, move env values.

JSON (with comments and trailing commas) and YAML are edited as text, at the exact character
spans :mod:`portcullis.scan.parse` records, so every byte outside the edited values is kept:
comments, key order, indentation, quoting. Wrap *inserts* its prefix before the first original
argument and unwrap removes exactly that range again, so the original array's layout survives
a round trip byte for byte. Each operation re-parses the text it produced, so spans are always
fresh and edits never have to be ordered. TOML (Codex) goes through tomlkit, which keeps
comments and the original items' quoting.

Every function here is pure: text in, text out.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from portcullis.scan.model import Format
from portcullis.scan.parse import Document, ParseError, Span, escape, parse

__all__ = [
    "EntryEditor",
    "Shape",
    "shape_of",
]

_BLOCK_ITEM = re.compile(r"[ \t]*(?:-[ \t]+)+")
_LONE_LF = re.compile(r"(?<!\r)\n")


@dataclass(frozen=True)
class Shape:
    """Where an entry keeps its launch, as pointers relative to the entry.

    ``args`` is None when ``command`` is itself the whole argv array (OpenCode).
    """

    command: str
    args: str | None
    env: str


def shape_of(raw: dict[str, Any]) -> Shape:
    """The key layout of a client's entry: standard, OpenCode, Zed (old form) or Goose."""
    command = raw.get("command")
    if isinstance(command, list):
        return Shape("/command", None, "/environment")
    if isinstance(command, dict):
        return Shape("/command/path", "/command/args", "/command/env")
    if "cmd" in raw and "command" not in raw:
        return Shape("/cmd", "/args", "/envs")
    return Shape("/command", "/args", "/env")


def _unescape(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")


def _parts(ptr: str) -> list[str]:
    return [_unescape(t) for t in ptr.split("/")[1:]] if ptr else []


def _get(value: Any, ptr: str) -> Any:
    for part in _parts(ptr):
        if isinstance(value, dict):
            if part not in value:
                return None
            value = value[part]
        elif isinstance(value, list):
            if not part.isdigit() or int(part) >= len(value):
                return None
            value = value[int(part)]
        else:
            return None
    return value


def _quote(text: str) -> str:
    # A JSON string is also a valid YAML double-quoted scalar.
    return json.dumps(text, ensure_ascii=False)


def _line_start(text: str, offset: int) -> int:
    return text.rfind("\n", 0, offset) + 1


def _line_end(text: str, offset: int) -> int:
    """The offset just after the newline that ends the line holding ``offset``."""
    nl = text.find("\n", offset)
    return len(text) if nl < 0 else nl + 1


def _indent(text: str, offset: int) -> str:
    start = _line_start(text, offset)
    prefix = text[start:offset]
    return prefix[: len(prefix) - len(prefix.lstrip(" \t"))]


class EntryEditor:
    """Edits one entry (at ``pointer``) of a JSON or YAML file, or a TOML file via tomlkit."""

    def __init__(self, text: str, fmt: Format, pointer: str, doc: Document | None = None) -> None:
        self.text = text
        self.format = fmt
        self.pointer = pointer
        # A parse of ``text`` the caller already has: a multi-MB ~/.claude.json is slow to parse.
        self._doc: Document | None = doc if doc is not None and doc.text == text else None
        # A file written with CRLF line endings gets CRLF in the lines an edit adds too (a
        # Windows editor or client would otherwise see mixed endings).
        self._crlf = "\r\n" in text and _LONE_LF.search(text) is None

    # ---- reading -----------------------------------------------------------------------

    @property
    def parsed(self) -> Document | None:
        """The parse of the current text if one was made already (else None)."""
        return self._doc

    @property
    def doc(self) -> Document:
        """The parse of the current text (re-parsed after every edit)."""
        if self._doc is None:
            self._doc = parse(self.text, self.format)
        return self._doc

    def entry(self) -> dict[str, Any]:
        """The entry's current value."""
        value = _get(self.doc.value, self.pointer)
        return value if isinstance(value, dict) else {}

    def get(self, rel: str) -> Any:
        """The value at ``rel`` inside the entry (None when absent)."""
        return _get(self.doc.value, self.pointer + rel)

    def launch(self, shape: Shape) -> list[str] | None:
        """The entry's argv (command then arguments), or None when it has no usable command."""
        command = self.get(shape.command)
        if shape.args is None:
            ok = isinstance(command, list) and command and all(isinstance(c, str) for c in command)
            return list(command) if ok else None
        if not isinstance(command, str) or not command:
            return None
        args = self.get(shape.args)
        if args is None:
            args = []
        if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
            return None
        return [command, *args]

    def _span(self, rel: str) -> Span:
        return self.doc.spans[self.pointer + rel]

    def _source(self, rel: str) -> str:
        span = self._span(rel)
        return self.text[span.start : span.end]

    def _before(self, offset: int) -> str:
        """The text between the start of the line and ``offset``."""
        return self.text[_line_start(self.text, offset) : offset]

    def reset(self, text: str) -> None:
        """Go back to ``text`` (the state before an edit that was refused)."""
        self.text = text
        self._doc = None

    def _set(self, text: str) -> None:
        self.text = _LONE_LF.sub("\r\n", text) if self._crlf else text
        self._doc = None

    def _splice(self, start: int, end: int, new: str) -> None:
        self._set(self.text[:start] + new + self.text[end:])

    # ---- wrap ----------------------------------------------------------------------------

    def wrap(self, shape: Shape, head: list[str], prefix: list[str]) -> None:
        """Make the launch ``head + prefix + original argv``.

        ``head`` replaces the command (``[exe]`` or ``[python]``); ``prefix`` goes in front
        of the original command, which moves into the arguments verbatim (its source text).
        """
        if self.format == "toml":
            self._toml_wrap(shape, head, prefix)
            return
        if shape.args is None:
            self._insert_items(shape.command, [_quote(x) for x in [*head, *prefix]])
            return
        command_src = self._source(shape.command)
        args = self.get(shape.args)
        items = [_quote(x) for x in [*head[1:], *prefix]]
        if isinstance(args, list) and args:
            flow = not _BLOCK_ITEM.fullmatch(self._item_prefix(shape.args + "/0"))
            self._insert_items(shape.args, [*items, self._portable(command_src, flow)])
        elif isinstance(args, list):
            span = self._span(shape.args)
            inner = ", ".join([*items, self._portable(command_src, True)])
            self._splice(span.start, span.end, f"[{inner}]")
        else:
            self._insert_args_member(shape, items, command_src)
        span = self._span(shape.command)
        self._splice(span.start, span.end, _quote(head[0]))

    def _portable(self, source: str, flow: bool) -> str:
        """A YAML plain scalar that would read differently inside ``[…]`` is re-quoted.

        Flow context has more indicators than block context: ``,[]{}#`` and ``: `` anywhere,
        and a leading ``?`` or ``:`` (``cmd: ?x`` is a string, ``[?x]`` a mapping).
        """
        if self.format != "yaml" or not flow or source[:1] in "\"'":
            return source
        value = parse(source, "yaml").value
        try:
            same = parse(f"[{source}]", "yaml").value == [value]
        except ParseError:
            same = False
        return source if same else _quote(str(value))

    def _item_prefix(self, rel: str) -> str:
        span = self._span(rel)
        return self.text[_line_start(self.text, span.start) : span.start]

    def _insert_items(self, array_rel: str, items: list[str]) -> None:
        """Insert source-text ``items`` before the first item of a non-empty array."""
        span = self._span(array_rel + "/0")
        prefix = self._item_prefix(array_rel + "/0")
        if _BLOCK_ITEM.fullmatch(prefix) and self.format == "yaml":
            sep = "\n" + prefix
        elif not prefix.strip():
            sep = ",\n" + prefix
        else:
            sep = ", "
        self._splice(span.start, span.start, "".join(item + sep for item in items))

    def _insert_args_member(self, shape: Shape, items: list[str], command_src: str) -> None:
        """Add an ``args`` member right after the command's (the entry had none).

        It is always written one item per line: that is how unwrap tells an ``args`` wrap added
        (removed again) from an empty one that was there before (kept, emptied).
        """
        assert shape.args is not None
        key = _parts(shape.args)[-1]
        cmd = self._span(shape.command)
        key_at = cmd.key_start if cmd.key_start is not None else cmd.start
        own_line = not self._before(key_at).strip()
        mapping = self._span(shape.command.rpartition("/")[0])
        block = self.format == "yaml" and self.text[mapping.start : mapping.start + 1] != "{"
        # A block list is the same YAML context the command was written in: it moves as is.
        items = [*items, self._portable(command_src, not block)]
        if block:
            indent = " " * len(self._before(key_at))
            lines = "".join(f"\n{indent}  - {item}" for item in items)
            self._splice(cmd.end, cmd.end, f"\n{indent}{key}:{lines}")
            return
        indent = _indent(self.text, key_at) if own_line else ""
        unit = "\t" if indent.startswith("\t") else "  "
        body = ",\n".join(indent + unit + item for item in items)
        sep = ",\n" + indent if own_line else ", "
        name = _quote(key) if self.format == "json" else key
        self._splice(cmd.end, cmd.end, f"{sep}{name}: [\n{body}\n{indent}]")

    def _toml_wrap(self, shape: Shape, head: list[str], prefix: list[str]) -> None:
        import tomlkit

        doc = tomlkit.parse(self.text)
        table = self._toml_table(doc, shape.command)
        key = _parts(shape.command)[-1]
        original = table[key]
        table[key] = head[0]
        new = [*head[1:], *prefix]
        args_key = _parts(shape.args or "/args")[-1]
        if args_key in table and "\n" in table[args_key].as_string():
            array = table[args_key]
            # Inserted items copy the layout of the items below them (one per line).
            array.insert(0, original)
            for item in reversed(new):
                array.insert(0, item)
        elif args_key in table:
            # tomlkit inserts into a one-line array without spaces; a fresh array is written
            # `[a, b]` and keeps the original items (and the line's comment) as they were.
            old = table[args_key]
            fresh = tomlkit.array()
            fresh.extend([*new, original, *(old[i] for i in range(len(old)))])
            fresh.trivia.comment = old.trivia.comment
            fresh.trivia.comment_ws = old.trivia.comment_ws
            table[args_key] = fresh
        else:
            # One item per line marks an array wrap added (see _drop_args).
            added = tomlkit.array()
            added.extend([*new, str(original)])
            added.multiline(True)
            table[args_key] = added
        self._set(tomlkit.dumps(doc))

    def _toml_table(self, doc: Any, rel: str) -> Any:
        table = doc
        for part in _parts(self.pointer + rel)[:-1]:
            table = table[int(part)] if isinstance(table, list) else table[part]
        return table

    # ---- unwrap --------------------------------------------------------------------------

    def unwrap(self, shape: Shape, separator: int) -> None:
        """Undo :meth:`wrap`: drop argv items ``1 … separator`` and restore the command.

        ``separator`` is the index in the whole argv of wrap's ``--``; the item after it is
        the original command (for OpenCode the argv is the ``command`` array itself).
        """
        if self.format == "toml":
            self._toml_unwrap(shape, separator)
            return
        if shape.args is None:
            first = self._span(shape.command + "/0")
            after = self._span(f"{shape.command}/{separator + 1}")
            self._splice(first.start, after.start, "")
            return
        args = self.get(shape.args)
        assert isinstance(args, list)
        k = separator - 1  # the index of "--" inside args
        original_src = self._source(f"{shape.args}/{k + 1}")
        if k + 2 < len(args):
            first = self._span(shape.args + "/0")
            rest = self._span(f"{shape.args}/{k + 2}")
            self._splice(first.start, rest.start, "")
        else:
            self._drop_args(shape)
        span = self._span(shape.command)
        self._splice(span.start, span.end, original_src)

    def _drop_args(self, shape: Shape) -> None:
        """The server had no arguments: remove the ``args`` wrap added, or empty the old one.

        Wrap adds ``args`` right after the command, one item per line; any other ``args`` was
        there before wrap (written inline into it) and is kept as ``[]``.
        """
        assert shape.args is not None
        cmd = self._span(shape.command)
        args = self._span(shape.args)
        count = len(self.get(shape.args) or [])
        last = self._span(f"{shape.args}/{count - 1}") if count else args
        end = max(args.end, last.end) if self.text[args.start : args.start + 1] == "[" else last.end
        between = self.text[cmd.end : args.key_start if args.key_start is not None else 0]
        pattern = r",\s*" if self.format == "json" else r"(?:,[ \t]*|\r?\n[ \t]*)"
        added = re.fullmatch(pattern, between) and "\n" in self.text[args.start : end]
        if added and args.key_start is not None:
            self._splice(cmd.end, end, "")
        else:
            self._splice(args.start, end, "[]")

    def _toml_unwrap(self, shape: Shape, separator: int) -> None:
        import tomlkit

        doc = tomlkit.parse(self.text)
        table = self._toml_table(doc, shape.command)
        key = _parts(shape.command)[-1]
        args_key = _parts(shape.args or "/args")[-1]
        array = table[args_key]
        k = separator - 1
        original = array[k + 1]
        if k + 2 < len(array):
            for _ in range(k + 2):
                del array[0]
        elif "\n" in array.as_string():
            del table[args_key]
        else:
            for _ in range(len(array)):
                del array[0]
        table[key] = original
        self._set(tomlkit.dumps(doc))

    # ---- env -----------------------------------------------------------------------------

    def remove_env(self, shape: Shape, names: list[str]) -> None:
        """Remove these variables from the entry's env mapping (kept as ``{}`` when emptied)."""
        for name in names:
            self._remove_env(shape, name)

    def _remove_env(self, shape: Shape, name: str) -> None:
        if self.format == "toml":
            import tomlkit

            doc = tomlkit.parse(self.text)
            table = self._toml_table(doc, shape.env + "/x")
            del table[name]
            self._set(tomlkit.dumps(doc))
            return
        env = self.get(shape.env)
        if not isinstance(env, dict) or name not in env:
            return
        names = list(env)
        env_span = self._span(shape.env)
        member = f"{shape.env}/{escape(name)}"
        cur = self._span(member)
        assert cur.key_start is not None
        flow = self.format == "json" or self.text[env_span.start : env_span.start + 1] == "{"
        if len(names) == 1:
            end = env_span.end if flow else cur.end
            # A block scalar's span takes its line break: put it back after the `{}`.
            eol = "" if flow or self.text[end - 1 : end] != "\n" else "\n"
            self._splice(env_span.start, end, "{}" + eol)
            return
        if not flow:
            start = _line_start(self.text, cur.key_start)
            # A block scalar (`KEY: |`) ends after its own last line break already.
            ends_line = self.text[cur.end - 1 : cur.end] == "\n"
            self._splice(start, cur.end if ends_line else _line_end(self.text, cur.end), "")
            return
        i = names.index(name)
        if i > 0:
            prev = self._span(f"{shape.env}/{escape(names[i - 1])}")
            if re.fullmatch(r"\s*,\s*", self.text[prev.end : cur.key_start]):
                self._splice(prev.end, cur.end, "")
                return
        nxt = self._span(f"{shape.env}/{escape(names[i + 1])}") if i + 1 < len(names) else None
        if nxt is not None and nxt.key_start is not None:
            self._splice(cur.key_start, nxt.key_start, "")
        else:
            m = re.compile(r"\s*,").match(self.text, cur.end)
            self._splice(cur.key_start, m.end() if m else cur.end, "")

    def add_env(self, shape: Shape, values: dict[str, str]) -> None:
        """Add (or overwrite) these variables in the entry's env mapping, creating it if needed."""
        for name, value in values.items():
            self._add_env(shape, name, value)

    def _add_env(self, shape: Shape, name: str, value: str) -> None:
        if self.format == "toml":
            import tomlkit

            doc = tomlkit.parse(self.text)
            table = self._toml_table(doc, shape.env)
            key = _parts(shape.env)[-1]
            if key not in table:
                table[key] = tomlkit.inline_table()
            table[key][name] = value
            self._set(tomlkit.dumps(doc))
            return
        env = self.get(shape.env)
        member = f"{_quote(name)}: {_quote(value)}"
        if isinstance(env, dict) and name in env:
            span = self._span(f"{shape.env}/{escape(name)}")
            self._splice(span.start, span.end, _quote(value))
            return
        if isinstance(env, dict) and env:
            last = self._span(f"{shape.env}/{escape(list(env)[-1])}")
            assert last.key_start is not None
            own_line = not self._before(last.key_start).strip()
            env_span = self._span(shape.env)
            flow = self.format == "json" or self.text[env_span.start] == "{"
            if not flow:
                indent = " " * len(self._before(last.key_start))
                if self.text[last.end - 1 : last.end] == "\n":
                    # The last value is a block scalar, which ends after its line break.
                    self._splice(last.end, last.end, indent + member + "\n")
                    return
                sep = "\n" + indent
            else:
                sep = (",\n" + _indent(self.text, last.key_start)) if own_line else ", "
            self._splice(last.end, last.end, sep + member)
            return
        if isinstance(env, dict):
            span = self._span(shape.env)
            self._splice(span.start, span.end, "{" + member + "}")
            return
        # No env mapping: add one after the entry's last member.
        entry = self.entry()
        last_key = list(entry)[-1]
        last = self._span("/" + escape(last_key))
        key = _parts(shape.env)[-1]
        assert last.key_start is not None
        entry_span = self.doc.spans[self.pointer]
        flow = self.format == "json" or self.text[entry_span.start] == "{"
        own_line = not self._before(last.key_start).strip()
        if flow:
            sep = (",\n" + _indent(self.text, last.key_start)) if own_line else ", "
            self._splice(last.end, last.end, f"{sep}{_quote(key)}: {{{member}}}")
        else:
            sep = "\n" + " " * len(self._before(last.key_start))
            self._splice(last.end, last.end, f"{sep}{key}: {{{member}}}")
