"""The position-keeping parser: JSONC, YAML and TOML to values plus spans."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from portcullis.scan.parse import Document, ParseError, Span, escape, parse, pointer

_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
_json_values = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5)
    ),
    max_leaves=25,
)


def _walk(value: Any, ptr: str = "") -> list[tuple[str, Any]]:
    out = [(ptr, value)]
    if isinstance(value, dict):
        for k, v in value.items():
            out.extend(_walk(v, f"{ptr}/{escape(k)}"))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out.extend(_walk(v, f"{ptr}/{i}"))
    return out


@settings(max_examples=150, deadline=None)
@given(_json_values, st.sampled_from([None, 0, 2]))
def test_json_round_trip_and_spans(value: Any, indent: int | None) -> None:
    """Any json.dumps output parses to the same value; every span slices back to its value."""
    text = json.dumps(value, indent=indent, ensure_ascii=False)
    doc = parse(text, "json")
    assert doc.value == value
    for ptr, sub in _walk(value):
        span = doc.spans[ptr]
        assert json.loads(text[span.start : span.end]) == sub
        assert doc.line(ptr) == text.count("\n", 0, span.start) + 1


@settings(max_examples=100, deadline=None)
@given(_json_values)
def test_comments_and_trailing_commas_do_not_change_the_value(value: Any) -> None:
    """Comments between tokens and trailing commas (JSONC) leave the value unchanged."""
    text = json.dumps(value, indent=2)
    # A trailing comma before every closing bracket that starts a line, then a comment after
    # every line break (json.dumps escapes newlines inside strings, so these are all between
    # tokens).
    noisy = text.replace("\n}", ",/* c */\n}").replace("\n]", ",\n]")
    noisy = noisy.replace("\n", "\n// note, with } and ] inside\n")
    noisy = "/* head */ " + noisy + " // tail"
    if "\n}" in text or "\n]" in text:
        assert ",/* c */" in noisy or ",\n" in noisy
    assert parse(noisy, "json").value == value


def test_jsonc_lines_and_columns() -> None:
    """Spans carry 1-based line and column, and the key's offset."""
    text = '{\n  // c\n  "a": [1, "x"],\n}'
    doc = parse(text, "json")
    assert doc.spans["/a"] == Span(3, 8, text.index("["), text.index("]") + 1, text.index('"a"'))
    assert doc.spans["/a/1"].column == 12
    assert doc.line("/a/9/z") == 3
    assert doc.key_line("/a") == 3


def test_duplicate_keys_last_wins_and_forgets_old_spans() -> None:
    """The last duplicate wins and no span points into the earlier value."""
    doc = parse('{"a": {"old": 1},\n "a": {"new": 2}}', "json")
    assert doc.value == {"a": {"new": 2}}
    assert "/a/old" not in doc.spans
    assert doc.line("/a") == 2


@pytest.mark.parametrize(
    ("text", "line", "column"),
    [
        ('{\n  "a": 1\n  "b": 2\n}', 3, 3),
        ('{"a": tru}', 1, 7),
        ("[1, 2", 1, 6),
        ('{"a": "x\ny"}', 1, 9),
        ("/* open", 1, 1),
        ("", 1, 1),
        ("{} x", 1, 4),
        ("{'a': 1}", 1, 2),
    ],
)
def test_json_errors_have_positions(text: str, line: int, column: int) -> None:
    """Bad JSON raises ParseError with the line and column of the problem."""
    with pytest.raises(ParseError) as info:
        parse(text, "json")
    assert (info.value.line, info.value.column) == (line, column)


def test_deep_nesting_is_an_error_not_a_crash() -> None:
    """Pathological nesting is a ParseError, never a RecursionError."""
    with pytest.raises(ParseError, match="nested deeper"):
        parse("[" * 5000 + "]" * 5000, "json")


def test_many_literals_are_linear() -> None:
    """A large file of literals parses quickly (no re-slicing of the text per token)."""
    text = "[" + ",".join(["true", "null", "false"] * 100_000) + "]"
    assert len(parse(text, "json").value) == 300_000


def test_yaml_values_and_lines() -> None:
    """YAML keeps node lines; key_line names the key's line for nested mappings."""
    text = "a:\n  b:\n    c: 1\n  l:\n    - x\n    - true\n"
    doc = parse(text, "yaml")
    assert doc.value == {"a": {"b": {"c": 1}, "l": ["x", True]}}
    assert doc.line("/a/b") == 3
    assert doc.key_line("/a/b") == 2
    assert doc.line("/a/l/1") == 6


def test_yaml_empty_and_errors() -> None:
    """An empty YAML file is None; bad YAML raises ParseError with its line."""
    assert parse("", "yaml").value is None
    with pytest.raises(ParseError) as info:
        parse("a: [\nb: }\n", "yaml")
    assert info.value.line == 2


def test_toml_lines() -> None:
    """TOML spans give the line of headers and keys; inline tables fall back to their key."""
    text = (
        'x = 1\n[mcp_servers."my.srv"]\ncommand = "npx"\nargs = [\n  "a",\n]\nenv = { K = "v" }\n'
    )
    doc = parse(text, "toml")
    assert doc.value["mcp_servers"]["my.srv"]["args"] == ["a"]
    assert doc.line(pointer("mcp_servers", "my.srv")) == 2
    assert doc.line(pointer("mcp_servers", "my.srv", "command")) == 3
    assert doc.line(pointer("mcp_servers", "my.srv", "args", 0)) == 4
    assert doc.line(pointer("mcp_servers", "my.srv", "env", "K")) == 7


def test_toml_error_line() -> None:
    """Bad TOML raises ParseError with tomllib's line."""
    with pytest.raises(ParseError) as info:
        parse("a = 1\nb = \n", "toml")
    assert info.value.line == 2


def test_pointer_escapes() -> None:
    """Pointers escape ~ and / per RFC 6901."""
    assert pointer("projects", "/home/me", "a~b", 3) == "/projects/~1home~1me/a~0b/3"


def test_document_line_fallback() -> None:
    """A pointer with no span falls back to its nearest parent, then line 1."""
    doc = Document({}, "", "json", {})
    assert doc.line("/x/y") == 1


def test_yaml_alias_bomb_is_refused_quickly() -> None:
    """Nested aliases that expand to billions of values are a ParseError, not a hang."""
    lines = ["l0: &l0 [x, x, x, x, x, x, x, x, x, x]"]
    for k in range(1, 10):
        lines.append(f"l{k}: &l{k} [" + ", ".join([f"*l{k - 1}"] * 10) + "]")
    with pytest.raises(ParseError, match="aliases"):
        parse("\n".join(lines) + "\n", "yaml")


def test_yaml_aliases_within_reason_still_parse() -> None:
    """Ordinary anchors and aliases (shared settings) keep working."""
    doc = parse("base: &b {command: npx}\nservers:\n  a: *b\n  c: *b\n", "yaml")
    assert doc.value["servers"] == {"a": {"command": "npx"}, "c": {"command": "npx"}}


def test_toml_deep_nesting_is_a_parse_error() -> None:
    """A deeply nested inline array is a ParseError, never a RecursionError crash."""
    with pytest.raises(ParseError):
        parse("a = " + "[" * 100_000 + "]" * 100_000 + "\n", "toml")


@pytest.mark.parametrize(
    ("text", "fmt", "line"),
    [
        ('{\n"a": ' + "9" * 5000 + "}", "json", 2),
        ("a: 1\nb: " + "9" * 5000 + "\n", "yaml", 2),
        ("a = " + "9" * 5000 + "\n", "toml", 1),
        ("a: 1\nb: !env HOME\n", "yaml", 2),
        ("a: 1\nb: !!python/object:os.system x\n", "yaml", 2),
        ("a: 2001-13-45\n", "yaml", 1),
    ],
)
def test_values_python_cannot_build_are_parse_errors(text: str, fmt: Any, line: int) -> None:
    """Huge numbers, unknown YAML tags and impossible dates are ParseErrors, never crashes."""
    with pytest.raises(ParseError) as caught:
        parse(text, fmt)
    assert caught.value.line == line
