"""The text edits themselves: env members removed and added in every layout, still valid."""

from __future__ import annotations

import itertools

import pytest

from portcullis.scan.model import Format
from portcullis.scan.parse import parse
from portcullis.wrap.edit import EntryEditor, shape_of

LAYOUTS: list[tuple[Format, str, str]] = [
    ("json", '{"s": {"command": "x", "env": {"A": "1", "B": "2", "C": "3"}}}', "/s"),
    (
        "json",
        '{\n  "s": {\n    "command": "x",\n    "env": {\n      "A": "1", // a\n      "B": "2",\n'
        '      "C": "3",\n    },\n  },\n}\n',
        "/s",
    ),
    ("yaml", "s:\n  command: x\n  env:\n    A: '1'\n    B: \"2\"  # b\n    C: '3'\nt: 1\n", "/s"),
    ("yaml", "s:\n  command: x\n  env: {A: '1', B: '2', C: '3'}\n", "/s"),
    (
        "yaml",
        "list:\n  - name: s\n    command: x\n    env:\n      A: '1'\n      B: '2'\n      C: '3'\n",
        "/list/0",
    ),
    ("toml", '[s]\ncommand = "x"\nenv = { A = "1", B = "2", C = "3" }\n', "/s"),
]


def env_of(text: str, fmt: Format, ptr: str) -> dict[str, str]:
    """The env mapping of the entry at ``ptr`` after parsing ``text``."""
    value = parse(text, fmt).value
    for part in ptr.split("/")[1:]:
        value = value[int(part)] if isinstance(value, list) else value[part]
    env = value.get("env")
    assert isinstance(env, dict), text
    return env


@pytest.mark.parametrize(("fmt", "text", "ptr"), LAYOUTS)
def test_removing_any_subset_leaves_the_rest(fmt: Format, text: str, ptr: str) -> None:
    """Every subset of variables can be removed; the file still parses with the others."""
    names = ["A", "B", "C"]
    for n in range(1, 4):
        for gone in itertools.combinations(names, n):
            editor = EntryEditor(text, fmt, ptr)
            editor.remove_env(shape_of(editor.entry()), list(gone))
            env = env_of(editor.text, fmt, ptr)
            assert sorted(env) == [k for k in names if k not in gone], editor.text


@pytest.mark.parametrize(("fmt", "text", "ptr"), LAYOUTS)
def test_adding_back_restores_the_values(fmt: Format, text: str, ptr: str) -> None:
    """Removed variables added back give the same mapping (order aside)."""
    editor = EntryEditor(text, fmt, ptr)
    shape = shape_of(editor.entry())
    editor.remove_env(shape, ["A", "C"])
    editor.add_env(shape, {"A": "1", "C": "3"})
    assert env_of(editor.text, fmt, ptr) == {"A": "1", "B": "2", "C": "3"}
    editor.remove_env(shape, ["A", "B", "C"])
    editor.add_env(shape, {"Z": "9"})
    assert env_of(editor.text, fmt, ptr) == {"Z": "9"}


@pytest.mark.parametrize(
    ("fmt", "text"),
    [
        ("json", '{"s": {"command": "x"}}'),
        ("json", '{\n  "s": {\n    "command": "x",\n    "args": []\n  }\n}\n'),
        ("yaml", "s:\n  command: x\n"),
        ("yaml", "s: {command: x}\n"),
    ],
)
def test_env_is_created_when_missing(fmt: Format, text: str) -> None:
    """An entry without env gets one holding the variables."""
    editor = EntryEditor(text, fmt, "/s")
    editor.add_env(shape_of(editor.entry()), {"K": "v"})
    assert env_of(editor.text, fmt, "/s") == {"K": "v"}


@pytest.mark.parametrize(
    ("fmt", "text"),
    [
        ("yaml", "s:\n  command: x\n  args: [a, 'b c', \"d\"]\n"),
        ("yaml", "s:\n  command: 'x y'\n  args:\n  - a\n  - b\n"),
        # A plain scalar that would break inside [...] is quoted on the way (same value).
        ("yaml", "s:\n  command: a,b\n  args: []\n"),
        ("yaml", "s: {command: x, args: [a]}\n"),
        ("yaml", "s: {command: x}\n"),
        ("yaml", "s:\n  command: x\n  env: {}\n"),
        ("yaml", "s:\n  command: x\n  args: []\n  env: {}\n"),
        ("json", '{"s": {"command": "x"}}'),
        ("json", '{"s": {"command": "x", "args": []}}'),
        ("json", '{\n\t"s": {\n\t\t"command": "x"\n\t}\n}\n'),
        ("json", '{"s": {"command": "x", "args": ["a"]}}'),
        ("json", '{"s": {"args": ["a"], "command": "x"}}'),
    ],
)
def test_wrap_and_unwrap_in_odd_layouts(fmt: Format, text: str) -> None:
    """Flow and block sequences, quoting and key order: valid after wrap, original after unwrap."""
    editor = EntryEditor(text, fmt, "/s")
    shape = shape_of(editor.entry())
    before = editor.launch(shape)
    assert before is not None
    editor.wrap(shape, ["/bin/portcullis"], ["run", "--server", "s", "--"])
    after = editor.launch(shape)
    assert after == ["/bin/portcullis", "run", "--server", "s", "--", *before]
    editor.unwrap(shape, 4)
    assert editor.launch(shape) == before
    expected = text.replace("command: a,b", 'command: "a,b"')
    assert editor.text == expected


def test_a_variable_is_added_after_a_yaml_block_scalar() -> None:
    """Adding to a block env whose last value is `KEY: |` puts the new line after the scalar."""
    text = (
        "extensions:\n  s:\n    cmd: x\n    envs:\n      CERT: |\n        line\n    type: stdio\n"
    )
    editor = EntryEditor(text, "yaml", "/extensions/s")
    editor.add_env(shape_of(editor.entry()), {"TOKEN": "v"})
    value = parse(editor.text, "yaml").value["extensions"]["s"]
    assert value["envs"] == {"CERT": "line\n", "TOKEN": "v"}
    assert value["type"] == "stdio"
