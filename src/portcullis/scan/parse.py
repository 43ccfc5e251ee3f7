"""Read client configuration files and remember where every value was written.

Clients write JSON with comments and trailing commas (VS Code, Zed, OpenCode), TOML (Codex)
and YAML (Continue, Goose). Findings need real line numbers and ``wrap`` needs the exact
character span of each value to edit a file without reformatting it, so every format parses
to a :class:`Document`: the value plus a map from JSON pointer to :class:`Span`.

No JSON library reports positions, so JSON is parsed here, token by token: strings go through
the C-accelerated ``json`` string scanner and whitespace and comments are skipped with one
regular expression, which keeps a multi-megabyte ``~/.claude.json`` fast. TOML values come
from ``tomllib`` and YAML from PyYAML's composer (which keeps the mark of every node).
"""

from __future__ import annotations

import bisect
import functools
import json
import re
import tomllib
from dataclasses import dataclass, field
from typing import Any

from portcullis._exceptions import ConfigError
from portcullis.scan.model import Format

__all__ = ["Document", "ParseError", "Span", "escape", "parse", "pointer"]

_MAX_DEPTH = 256
# YAML aliases share nodes, so a small file can stand for billions of values ("billion
# laughs"). Without aliases every value takes at least one character, so a budget of the
# file's length (plus slack) only ever stops an expansion.
_YAML_SLACK = 10_000


class ParseError(ConfigError):
    """A configuration file that is not valid in its format, with the line and column."""

    def __init__(self, message: str, line: int, column: int) -> None:
        super().__init__(f"line {line}, column {column}: {message}")
        self.reason = message
        self.line = line
        self.column = column


@dataclass(frozen=True)
class Span:
    """Where a value was written: 1-based line and column, and character offsets.

    ``start``/``end`` cover the value itself (for a string, its quotes). ``key_start`` is the
    offset of the member's key in its object (``None`` for array items and the root), so a
    whole ``"key": value`` member can be replaced or removed. TOML spans are line-only:
    ``start``/``end`` are -1 there.
    """

    line: int
    column: int
    start: int
    end: int
    key_start: int | None = None


@dataclass
class Document:
    """A parsed configuration file: its value, its text, and the span of every value."""

    value: Any
    text: str
    format: Format
    spans: dict[str, Span] = field(default_factory=dict)
    _index: _Lines | None = field(default=None, repr=False, compare=False)

    def key_line(self, ptr: str) -> int:
        """The line where member ``ptr`` is written: its key's line, else as :meth:`line`.

        In YAML a nested mapping's value starts on the line after its key, and a finding about
        an entry belongs on the line that names it.
        """
        span = self.spans.get(ptr)
        if span is None or span.key_start is None or span.start < 0:
            return self.line(ptr)
        if self._index is None:
            self._index = _Lines(self.text)
        return self._index.at(span.key_start)[0]

    def line(self, ptr: str) -> int:
        """The line of ``ptr``, or of its nearest parent that has a position (1 at worst)."""
        while True:
            span = self.spans.get(ptr)
            if span is not None:
                return span.line
            if not ptr:
                return 1
            ptr = ptr.rpartition("/")[0]


def escape(token: str) -> str:
    """Escape one JSON-pointer reference token (RFC 6901)."""
    return token.replace("~", "~0").replace("/", "~1")


def pointer(*tokens: str | int) -> str:
    """Join reference tokens into a JSON pointer.

    ``pointer("mcpServers", "a/b") == "/mcpServers/a~1b"``.
    """
    return "".join("/" + escape(str(t)) for t in tokens)


def parse(text: str, fmt: Format) -> Document:
    """Parse ``text`` as ``fmt``; raise :class:`ParseError` with the line on bad input."""
    if fmt == "json":
        return _Json(text).document()
    if fmt == "yaml":
        return _yaml(text)
    return _toml(text)


class _Lines:
    def __init__(self, text: str) -> None:
        self.starts = [0] + [m.end() for m in re.finditer(r"\r\n|\r|\n", text)]

    def at(self, offset: int) -> tuple[int, int]:
        row = bisect.bisect_right(self.starts, offset)
        return row, offset - self.starts[row - 1] + 1


# Whitespace, // line comments and /* block */ comments, in one match.
_SKIP = re.compile(r"(?:[ \t\r\n\ufeff]+|//[^\n]*|/\*.*?\*/)*", re.DOTALL)
_NUMBER = re.compile(r"-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?")
_LITERALS = {"true": True, "false": False, "null": None}
_WORD = re.compile(r"[A-Za-z_]\w*")
_scanstring = json.decoder.scanstring  # type: ignore[attr-defined]


class _Json:
    """JSON with comments and trailing commas (JSONC), as VS Code and Zed read it."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.lines = _Lines(text)
        self.spans: dict[str, Span] = {}

    def document(self) -> Document:
        i = self._skip(0)
        if i >= len(self.text):
            raise self._error("the file is empty", i)
        value, i = self._value(i, "", None, 0)
        i = self._skip(i)
        if i < len(self.text):
            raise self._error("unexpected text after the end of the document", i)
        return Document(value, self.text, "json", self.spans)

    def _error(self, message: str, offset: int) -> ParseError:
        line, column = self.lines.at(offset)
        return ParseError(message, line, column)

    def _skip(self, i: int) -> int:
        end = _SKIP.match(self.text, i)
        i = end.end() if end else i
        if self.text.startswith("/*", i):
            raise self._error("unterminated /* comment", i)
        return i

    def _value(self, i: int, ptr: str, key_start: int | None, depth: int) -> tuple[Any, int]:
        if depth > _MAX_DEPTH:
            raise self._error(f"nested deeper than {_MAX_DEPTH} levels", i)
        text = self.text
        ch = text[i : i + 1]
        start = i
        value: Any
        if ch == "{":
            value, i = self._object(i, ptr, depth)
        elif ch == "[":
            value, i = self._array(i, ptr, depth)
        elif ch == '"':
            value, i = self._string(i)
        else:
            m = _NUMBER.match(text, i)
            if m:
                raw = m.group()
                try:
                    value = float(raw) if any(c in raw for c in ".eE") else int(raw)
                except ValueError:  # Python refuses int() of over 4300 digits
                    raise self._error("a number too long to read", i) from None
                i = m.end()
            else:
                # Match in place: slicing ``text[i:]`` here made big files quadratic.
                word = _WORD.match(text, i)
                if word and word.group() in _LITERALS:
                    value, i = _LITERALS[word.group()], i + len(word.group())
                elif not ch:
                    raise self._error("the file ends where a value was expected", i)
                else:
                    raise self._error(f"unexpected {ch!r} where a value was expected", i)
        line, column = self.lines.at(start)
        self.spans[ptr] = Span(line, column, start, i, key_start)
        return value, i

    def _string(self, i: int) -> tuple[str, int]:
        try:
            value, end = _scanstring(self.text, i + 1, True)
        except json.JSONDecodeError as exc:
            message = exc.msg.lower().removesuffix(" at")
            raise self._error(message, exc.pos) from None
        return value, end

    def _object(self, i: int, ptr: str, depth: int) -> tuple[dict[str, Any], int]:
        out: dict[str, Any] = {}
        i = self._skip(i + 1)
        while True:
            ch = self.text[i : i + 1]
            if ch == "}":
                return out, i + 1
            if ch != '"':
                what = "a quoted key or }" if ch else "a key, but the file ends"
                raise self._error(f"expected {what}", i)
            key_start = i
            key, i = self._string(i)
            member = ptr + "/" + escape(key)
            if key in out:
                self._forget(member)
            i = self._skip(i)
            if self.text[i : i + 1] != ":":
                # a long "key" is more likely a value written in the wrong place: never quote
                # it whole, as it may be a credential
                shown = key if len(key) <= 16 else f"{key[:4]}…{key[-4:]}"
                raise self._error(f"expected ':' after the key {shown!r}", i)
            i = self._skip(i + 1)
            # The last of duplicate keys wins, as in the clients' own JSON.parse.
            out[key], i = self._value(i, member, key_start, depth + 1)
            i = self._skip(i)
            ch = self.text[i : i + 1]
            if ch == ",":
                i = self._skip(i + 1)
            elif ch != "}":
                raise self._error("expected ',' or '}' after a member", i)

    def _forget(self, ptr: str) -> None:
        """Drop the spans of a duplicate key's earlier value, so none point at dead text."""
        prefix = ptr + "/"
        for stale in [p for p in self.spans if p == ptr or p.startswith(prefix)]:
            del self.spans[stale]

    def _array(self, i: int, ptr: str, depth: int) -> tuple[list[Any], int]:
        out: list[Any] = []
        i = self._skip(i + 1)
        while True:
            if self.text[i : i + 1] == "]":
                return out, i + 1
            item, i = self._value(i, f"{ptr}/{len(out)}", None, depth + 1)
            out.append(item)
            i = self._skip(i)
            ch = self.text[i : i + 1]
            if ch == ",":
                i = self._skip(i + 1)
            elif ch != "]":
                raise self._error("expected ',' or ']' after an array item", i)


def _yaml(text: str) -> Document:
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        node = yaml.compose(text, Loader=loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        raise ParseError(str(exc.problem or exc.context or "invalid YAML"), line, column) from None
    except yaml.YAMLError as exc:
        raise ParseError(str(exc), 1, 1) from None
    spans: dict[str, Span] = {}
    if node is None:
        return Document(None, text, "yaml", spans)
    value = _yaml_value(node, "", None, spans, 0, [len(text) + _YAML_SLACK])
    return Document(value, text, "yaml", spans)


def _yaml_value(
    node: Any,
    ptr: str,
    key_start: int | None,
    spans: dict[str, Span],
    depth: int,
    budget: list[int],
) -> Any:
    import yaml

    if depth > _MAX_DEPTH:
        raise ParseError(f"nested deeper than {_MAX_DEPTH} levels", node.start_mark.line + 1, 1)
    budget[0] -= 1
    if budget[0] < 0:
        raise ParseError(
            "aliases expand to more values than the file could hold (a YAML bomb?)",
            node.start_mark.line + 1,
            node.start_mark.column + 1,
        )
    mark = node.start_mark
    spans[ptr] = Span(mark.line + 1, mark.column + 1, mark.index, node.end_mark.index, key_start)
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = _yaml_scalar(key_node)
            out[str(key)] = _yaml_value(
                value_node,
                ptr + "/" + escape(str(key)),
                key_node.start_mark.index,
                spans,
                depth + 1,
                budget,
            )
        return out
    if isinstance(node, yaml.SequenceNode):
        return [
            _yaml_value(n, f"{ptr}/{k}", None, spans, depth + 1, budget)
            for k, n in enumerate(node.value)
        ]
    return _yaml_scalar(node)


def _yaml_scalar(node: Any) -> Any:
    import yaml

    if not isinstance(node, yaml.ScalarNode):
        raise ParseError("a mapping key must be a plain value", node.start_mark.line + 1, 1)
    # Construct the scalar alone so tags (ints, bools, nulls) resolve as a loader would; forget
    # it afterwards, or the shared loader's cache would keep every node of every file alive.
    loader = _scalar_loader()
    try:
        return loader.construct_object(node)
    except (yaml.YAMLError, ValueError, OverflowError) as exc:
        # an unknown tag (!env), a bad date, a 5000-digit number: broken for us, not a crash
        problem = getattr(exc, "problem", None) or str(exc)
        mark = node.start_mark
        raise ParseError(str(problem).split("\n")[0], mark.line + 1, mark.column + 1) from None
    finally:
        loader.constructed_objects.pop(node, None)


@functools.cache
def _scalar_loader() -> Any:
    import yaml

    return yaml.SafeLoader("")


_TOML_HEADER = re.compile(r"^\s*\[\[?\s*(?P<key>[^\]]+?)\s*\]\]?\s*(?:#.*)?$")
_TOML_KEY = re.compile(
    r"""^\s*(?P<key>(?:[A-Za-z0-9_-]+|"(?:[^"\\]|\\.)*"|'[^']*')(?:\s*\.\s*(?:[A-Za-z0-9_-]+|"(?:[^"\\]|\\.)*"|'[^']*'))*)\s*="""
)
_TOML_PART = re.compile(r"""[A-Za-z0-9_-]+|"(?:[^"\\]|\\.)*"|'[^']*'""")


def _toml(text: str) -> Document:
    try:
        value = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"\(at line (\d+), column (\d+)\)", str(exc))
        line, column = (int(m.group(1)), int(m.group(2))) if m else (1, 1)
        raise ParseError(re.sub(r"\s*\(at line.*", "", str(exc)), line, column) from None
    except ValueError:  # tomllib's own int() of a number over 4300 digits
        raise ParseError("a number too long to read", 1, 1) from None
    except RecursionError:
        # tomllib has no nesting limit of its own: a deep inline array must not crash the scan
        raise ParseError("nested too deeply to parse", 1, 1) from None
    return Document(value, text, "toml", _toml_spans(text))


def _toml_parts(dotted: str) -> list[str]:
    parts = []
    for token in _TOML_PART.findall(dotted):
        if token.startswith('"'):
            token = json.loads(token)
        elif token.startswith("'"):
            token = token[1:-1]
        parts.append(token)
    return parts


def _toml_spans(text: str) -> dict[str, Span]:
    """Lines of table headers and keys; multi-line strings and arrays keep their key's line.

    ``tomllib`` gives no positions, so this walks the lines of text already known to be
    valid: an approximation that only has to find headers and ``key =`` lines.
    """
    spans: dict[str, Span] = {"": Span(1, 1, -1, -1)}
    table: list[str] = []
    counts: dict[str, int] = {}
    in_multiline: str | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        if in_multiline:
            if line.count(in_multiline) % 2 == 1:
                in_multiline = None
            continue
        header = _TOML_HEADER.match(line)
        if header:
            parts = _toml_parts(header.group("key"))
            base = pointer(*parts)
            if line.lstrip().startswith("[["):
                index = counts.get(base, 0)
                counts[base] = index + 1
                parts = [*parts, str(index)]
            table = parts
            for depth in range(1, len(table) + 1):
                spans.setdefault(pointer(*table[:depth]), Span(number, 1, -1, -1))
            continue
        key = _TOML_KEY.match(line)
        if key:
            parts = [*table, *_toml_parts(key.group("key"))]
            spans.setdefault(pointer(*parts), Span(number, 1, -1, -1))
            rest = line[key.end() :]
            for quote in ('"""', "'''"):
                if rest.count(quote) % 2 == 1:
                    in_multiline = quote
    return spans
