"""Wrap then unwrap over generated entries and layouts: the launch is right, the bytes come back."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from portcullis.scan.discover import load_file
from portcullis.wrap import parse_wrapped, plan_unwrap, plan_wrap, policy_refs
from tests.wrap.conftest import options

# Any text a user might type, minus what no client file holds (NUL, lone surrogates).
_TEXT = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=12)
_ARG = st.one_of(
    _TEXT,
    st.sampled_from(
        ["--", "-y", "$HOME", "a: b", "#x", "&a", "*b", "!t", "{x}", "[y]", 'q"', "\\"]
    ),
)
# YAML and TOML refuse control and unassigned characters even when quoted.
_YAML_TEXT = st.text(
    st.characters(exclude_categories=["Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"]), max_size=12
)
_YAML_ARG = st.one_of(_YAML_TEXT, _ARG.filter(lambda a: a.isprintable()))
# A command named portcullis already runs the gateway: wrap leaves it alone on purpose.
_COMMAND = _TEXT.filter(lambda t: bool(t) and "portcullis" not in t.lower())
_YAML_COMMAND = _YAML_TEXT.filter(lambda t: bool(t) and "portcullis" not in t.lower())
_NAME = st.one_of(_TEXT.filter(bool), st.sampled_from(["x:\n  command: evil", "a b", "__"]))
_SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _round_trip(name: str, text: str, argv: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text.encode())
        plan = plan_wrap([load_file(path)], options(Path(tmp)))
        wrapped = plan.files[0].after
        path.write_bytes(wrapped.encode())
        servers = load_file(path).servers
        assert len(servers) == 1
        got = parse_wrapped([servers[0].command or "", *servers[0].args])
        assert got is not None
        assert got.inner == argv
        assert plan_unwrap([load_file(path)]).files[0].after == text


@st.composite
def _json_entry(draw: st.DrawFn) -> tuple[str, list[str]]:
    name = draw(_NAME)
    command = draw(_COMMAND)
    args = draw(st.lists(_ARG, max_size=4))
    members: list[tuple[str, object]] = [("command", command)]
    has_args = bool(args) or draw(st.booleans())
    if has_args:
        members.append(("args", args))
    if draw(st.booleans()):
        members.append(("env", {"LOG": "1"}))
    members = draw(st.permutations(members))
    indent = draw(st.sampled_from([None, 2, "\t"]))
    ascii_only = draw(st.booleans())
    body = ", ".join(
        f"{json.dumps(k)}: {json.dumps(v, indent=indent, ensure_ascii=ascii_only)}"
        for k, v in members
    )
    comment = draw(st.sampled_from(["", " /* c */", " // c\n"]))
    text = json.dumps({"mcpServers": {name: {}}}, ensure_ascii=ascii_only, indent=indent)
    text = text.replace("{}", "{" + comment + body + "}", 1)
    if draw(st.booleans()):
        text = text.replace("\n", "\r\n")
    return text, [command, *args]


@_SETTINGS
@given(_json_entry())
def test_json_entries_round_trip(case: tuple[str, list[str]]) -> None:
    """Any JSON entry (names, quotes, unicode, CRLF, key order, comments) round-trips."""
    text, argv = case
    _round_trip(".cursor/mcp.json", text, argv)


def _yaml_scalar(draw: st.DrawFn, value: str, flow: bool) -> str:
    """``value`` written plain when YAML reads it back the same there, else double-quoted."""
    import yaml

    if draw(st.booleans()):
        probe = f"x: [{value}]" if flow else f"x:\n  - {value}"
        try:
            if "\n" not in value and yaml.safe_load(probe) == {"x": [value]}:
                return value
        except yaml.YAMLError:
            pass
    return json.dumps(value, ensure_ascii=False)


def _same_in_flow(source: str, value: str) -> bool:
    """Whether plain ``source`` still reads as ``value`` inside a ``[…]`` list."""
    import yaml

    try:
        return bool(yaml.safe_load(f"[{source}]") == [value])
    except yaml.YAMLError:
        return False


@st.composite
def _yaml_entry(draw: st.DrawFn) -> tuple[str, list[str]]:
    command = draw(_YAML_COMMAND.filter(lambda t: t.strip() != "" and t == t.strip()))
    args = draw(st.lists(_YAML_ARG, max_size=3))
    block = draw(st.booleans())
    cmd = _yaml_scalar(draw, command, False)
    if args and not block and cmd[:1] != '"' and not _same_in_flow(cmd, command):
        cmd = json.dumps(command, ensure_ascii=False)  # the documented limit: it gets quoted
    lines = ["extensions:", "  fs:", f"    cmd: {cmd}"]
    if args and block:
        lines += ["    args:", *(f"      - {_yaml_scalar(draw, a, False)}" for a in args)]
    elif args:
        lines.append(f"    args: [{', '.join(_yaml_scalar(draw, a, True) for a in args)}]")
    lines.append("    type: stdio")
    text = "\n".join(lines) + "\n"
    if draw(st.booleans()):
        text = text.replace("\n", "\r\n")
    return text, [command, *args]


@_SETTINGS
@given(_yaml_entry())
def test_yaml_entries_round_trip(case: tuple[str, list[str]]) -> None:
    """Goose entries, block or flow arguments, any quoted values, round-trip."""
    text, argv = case
    _round_trip("goose/config.yaml", text, argv)


@st.composite
def _toml_entry(draw: st.DrawFn) -> tuple[str, list[str]]:
    command = draw(_YAML_COMMAND)
    args = draw(st.lists(_YAML_ARG, max_size=3))
    lines = ["[mcp_servers.t]", f"command = {json.dumps(command, ensure_ascii=False)}"]
    if args:
        lines.append(f"args = {json.dumps(args, ensure_ascii=False)}")
    text = "\n".join(lines) + "\n"
    return text, [command, *args]


@_SETTINGS
@given(_toml_entry())
def test_toml_entries_round_trip(case: tuple[str, list[str]]) -> None:
    """Codex entries with any strings round-trip."""
    text, argv = case
    _round_trip(".codex/config.toml", text, argv)


@st.composite
def _opencode_entry(draw: st.DrawFn) -> tuple[str, list[str]]:
    argv = [draw(_COMMAND), *draw(st.lists(_ARG, max_size=3))]
    indent = draw(st.sampled_from([None, 2]))
    entry = {"type": "local", "command": argv, "enabled": True}
    text = json.dumps({"mcp": {draw(_NAME): entry}}, indent=indent, ensure_ascii=False)
    return text, argv


@_SETTINGS
@given(_opencode_entry())
def test_opencode_entries_round_trip(case: tuple[str, list[str]]) -> None:
    """OpenCode's single argv array round-trips."""
    text, argv = case
    _round_trip("opencode/opencode.json", text, argv)


_VAR = st.sampled_from(["GH_TOKEN", "API_KEY", "LOG", "MODE", "DB_PASSWORD", "X"])
_VALUE = st.sampled_from(
    ["abcdefgh12345678", "debug", "1", "multi\nline-secret-value", 'q"uo\\te-long']
)


@st.composite
def _env_entry(draw: st.DrawFn) -> tuple[str, str, dict[str, str]]:
    env = draw(st.dictionaries(_VAR, _VALUE, min_size=1, max_size=4))
    fmt = draw(st.sampled_from(["json", "yaml-block", "yaml-flow"]))
    if fmt == "json":
        indent = draw(st.sampled_from([None, 2]))
        entry = {"command": "x", "args": ["a"], "env": env}
        return ".cursor/mcp.json", json.dumps({"mcpServers": {"s": entry}}, indent=indent), env
    if fmt == "yaml-flow":
        body = ", ".join(f"{k}: {json.dumps(v)}" for k, v in env.items())
        envs = f"    envs: {{{body}}}\n"
    else:
        lines = []
        for k, v in env.items():
            if "\n" in v and draw(st.booleans()):
                lines.append(f"      {k}: |-\n" + "".join(f"        {p}\n" for p in v.split("\n")))
            else:
                lines.append(f"      {k}: {json.dumps(v)}\n")
        envs = "    envs:\n" + "".join(lines)
    text = f"extensions:\n  s:\n    cmd: x\n    args: [a]\n{envs}    type: stdio\n"
    return "goose/config.yaml", text, env


@_SETTINGS
@given(_env_entry())
def test_secrets_leave_any_env_layout_and_the_rest_stays(
    case: tuple[str, str, dict[str, str]],
) -> None:
    """Whatever the layout, secret variables leave the env, the others stay, the entry wraps."""
    from portcullis.wrap.plan import is_secret

    name, text, env = case
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.parent.mkdir(parents=True)
        path.write_text(text)
        plan = plan_wrap([load_file(path)], options(Path(tmp), keyring_ok=True))
        assert plan.files[0].servers == ["s"], [str(n) for n in plan.files[0].notes]
        path.write_text(plan.files[0].after)
        server = load_file(path).servers[0]
        assert server.env == {k: v for k, v in env.items() if not is_secret(k, v)}
        stored = {s.var: s.value for s in plan.secrets}
        assert stored == {k: v for k, v in env.items() if is_secret(k, v)}
        if plan.policy is not None:
            plan.policy.path.write_text(plan.policy.after)
        back = plan_unwrap(
            [load_file(path)],
            policy_refs=policy_refs,
            restore=lambda service, var: stored.get(var),
        )
        assert back.files[0].servers == ["s"], [str(n) for n in back.files[0].notes]
        path.write_text(back.files[0].after)
        server = load_file(path).servers[0]
        assert server.env == env
        assert [server.command, *server.args] == ["x", "a"]
