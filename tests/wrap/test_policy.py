"""The generated starting policy: tool rules, narrowed roots, sandbox, merging, validation."""

from __future__ import annotations

from fnmatch import fnmatchcase
from pathlib import Path

import pytest

from portcullis._exceptions import PolicyError
from portcullis.cli.main import main
from portcullis.gateway.guards.tools import RuleSet
from portcullis.policy.compiled import Rules
from portcullis.wrap import plan_wrap
from portcullis.wrap.policy import ALLOW, CONFIRM, filesystem_roots, merge, server_block, validate
from tests.wrap.conftest import load, options, write_config

HOME = "/home/me"
FS = ["npx", "-y", "@modelcontextprotocol/server-filesystem"]


def decide(name: str) -> str:
    """What the generated tool rules decide for ``name`` (confirm > allow > default)."""
    if any(fnmatchcase(name, p) for p in CONFIRM):
        return "confirm"
    if any(fnmatchcase(name, p) for p in ALLOW):
        return "allow"
    return "confirm"


@pytest.mark.parametrize(
    ("tool", "expected"),
    [
        ("read_text_file", "allow"),
        ("list_directory", "allow"),
        ("search_files", "allow"),
        ("get_file_info", "allow"),
        ("directory_tree", "allow"),
        ("write_file", "confirm"),
        ("edit_file", "confirm"),
        ("create_directory", "confirm"),
        ("move_file", "confirm"),
        ("delete_branch", "confirm"),
        ("get_or_create_issue", "confirm"),
        ("push_files", "confirm"),
        ("send_message", "confirm"),
        ("run_query", "confirm"),
        ("executeCommand", "confirm"),
        ("browser_click", "confirm"),
    ],
)
def test_tool_rules(tool: str, expected: str) -> None:
    """Read-looking tools are allowed; writing, executing and unknown ones need confirmation."""
    assert decide(tool) == expected


def test_rules_compile_to_the_same_decisions() -> None:
    """The gateway's own rule matcher agrees with the intended decisions."""
    rules = RuleSet(Rules(default="confirm", allow=ALLOW, confirm=CONFIRM), "tool", "fs")
    for tool in ("read_text_file", "write_file", "get_or_create_issue", "browser_click"):
        assert rules.decide(tool).rule.rpartition(".")[2] in ("allow", "confirm", "default")
        assert type(rules.decide(tool)).__name__.lower() == decide(tool)


@pytest.mark.parametrize(
    ("arg", "project", "roots", "todo"),
    [
        ("/srv/data", None, ["/srv/data"], 0),
        ("/", "/work/app", ["/work/app"], 0),
        ("/", None, [], 1),
        (HOME, None, [], 1),
        ("~", "/work/app", ["/work/app"], 0),
        ("/home", None, [], 1),
        (f"{HOME}/.ssh", None, [], 1),
        ("/etc", None, [], 1),
        (f"{HOME}/src/app", None, [f"{HOME}/src/app"], 0),
        ("rel/dir", "/work/app", ["/work/app/rel/dir"], 0),
    ],
)
def test_filesystem_roots_are_narrowed(
    monkeypatch: pytest.MonkeyPatch, arg: str, project: str | None, roots: list[str], todo: int
) -> None:
    """Root, home, system and credential directories become the project, or a TODO."""
    monkeypatch.setenv("HOME", HOME)
    got = filesystem_roots([*FS, arg], home=HOME, project=project)
    assert got is not None
    assert got[0] == roots
    assert len(got[1]) == todo


def test_a_broad_root_without_project_confirms_every_tool() -> None:
    """With no safe root left, nothing is allowed without confirmation, and a TODO says why."""
    block = server_block(
        "fs", [*FS, "/"], home=HOME, project=None, sandbox=False, env={}, origin="x"
    )
    assert block.value["tools"]["allow"] == []
    assert "paths" not in block.value
    assert "TODO narrow" in block.comment


def test_sandbox_only_when_available_and_bindable() -> None:
    """A sandbox block needs the sandbox here, narrowed roots and an installed or pinned package."""

    def sandbox(argv: list[str], available: bool = True) -> object:
        block = server_block(
            "fs", argv, home=HOME, project=None, sandbox=available, env={}, origin="x"
        )
        return block.value.get("sandbox")

    installed = ["/opt/app/node_modules/.bin/mcp-server-filesystem", "/srv/data"]
    assert sandbox(installed) == {"profile": "node", "network": "none"}
    assert sandbox(installed, available=False) is None
    assert sandbox([*FS, "/srv/data"]) is None  # npx without a version: cannot be bound
    pinned = ["npx", "-y", "@modelcontextprotocol/server-filesystem@2026.1.14", "/srv/data"]
    assert sandbox(pinned) == {"profile": "node", "network": "none"}
    assert sandbox(["uvx", "mcp-server-time"]) is None
    # `node script.js`: the node profile binds only the command's own node_modules tree.
    assert sandbox(["/usr/bin/node", "/opt/app/node_modules/x/dist/index.js", "/srv/data"]) is None


def test_generated_policy_validates_with_the_cli(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`portcullis policy validate` accepts the policy wrap writes for every format."""
    files = [load(write_config(tmp_path, k)) for k in ("claude-desktop", "codex", "goose", "zed")]
    plan = plan_wrap(files, options(tmp_path))
    assert plan.policy is not None
    path = tmp_path / "policy.yaml"
    path.write_text(plan.policy.after)
    assert main(["policy", "validate", str(path)]) == 0
    assert "ok:" in capsys.readouterr().out


def test_existing_blocks_and_comments_are_kept(tmp_path: Path) -> None:
    """Merging keeps the user's comments and never replaces a block they wrote."""
    existing = "# my policy\nversion: 1\nservers:\n  fs:  # mine\n    tools: {default: allow}\n"
    plan = plan_wrap([load(write_config(tmp_path, "zed"))], options(tmp_path, policy_text=existing))
    assert plan.policy is not None
    after = plan.policy.after
    assert after.startswith(existing)
    assert "\n  new:\n    tools:\n      default: confirm\n" in after
    assert plan.policy.added == ["new"]
    notes = [n.text for n in plan.files[0].notes]
    assert any("already has servers.fs, used as it is" in n for n in notes)


def test_invalid_result_is_refused(tmp_path: Path) -> None:
    """A merged policy that does not validate raises (the command then writes nothing)."""
    text = merge("version: 2\n", [])
    with pytest.raises(PolicyError):
        validate(text, str(tmp_path / "p.yaml"), [])


def test_same_name_in_two_clients_gets_two_blocks_when_launches_differ(tmp_path: Path) -> None:
    """Two different servers named alike get distinct policy names; the same one shares."""
    a = load(write_config(tmp_path, "claude-desktop"))
    b = load(write_config(tmp_path, "zed"))
    plan = plan_wrap([a, b], options(tmp_path))
    assert plan.policy is not None
    assert plan.policy.added == ["fs", "fs-2", "new"]


@pytest.mark.parametrize(
    ("existing", "kept"),
    [
        ("version: 1\n", "version: 1\n"),
        ("version: 1", "version: 1"),
        (
            "# top\nversion: 1\nservers:\n    a:  # c\n        tools: {default: allow}\naudit:\n  arguments: full\n",
            "# top\nversion: 1\nservers:\n    a:  # c\n        tools: {default: allow}\n",
        ),
        ("version: 1\nservers: {}\n", "version: 1\nservers:"),
    ],
)
def test_merge_keeps_the_users_bytes(tmp_path: Path, existing: str, kept: str) -> None:
    """New blocks are inserted as text: what the user wrote stays byte for byte, and validates."""
    block = server_block(
        "fs", [*FS, "/srv/data"], home=HOME, project=None, sandbox=False, env={}, origin="x"
    )
    after = merge(existing, [block])
    assert after.startswith(kept)
    if "audit:" in existing:
        assert after.endswith("audit:\n  arguments: full\n")
    validate(after, str(tmp_path / "p.yaml"), ["fs"])


@pytest.mark.parametrize("brk", ["\r", "\u2028", "\u2029", "\x85", "\n"])
def test_a_crafted_name_or_argument_cannot_write_policy_keys(tmp_path: Path, brk: str) -> None:
    """Line breaks in the entry's name or arguments stay inside the generated block's comment."""
    import json

    import yaml

    name = f"x{brk}  evil:{brk}    tools: {{default: allow}}{brk}    description:"
    arg = f"/{brk}  evil2:{brk}    tools: {{default: allow}}{brk}#"
    path = tmp_path / ".cursor" / "mcp.json"
    path.parent.mkdir()
    entry = {"command": "npx", "args": ["-y", "@modelcontextprotocol/server-filesystem", arg]}
    path.write_text(json.dumps({"mcpServers": {name: entry}}))
    plan = plan_wrap([load(path)], options(tmp_path))
    assert plan.policy is not None
    servers = yaml.safe_load(plan.policy.after)["servers"]
    assert list(servers) == plan.policy.added == ["x-evil-tools-default-allow-description"]
    validate(plan.policy.after, str(tmp_path / "policy.yaml"), plan.policy.added)


@pytest.mark.parametrize(
    ("root", "why"),
    [
        ("C:\\", "the whole file system"),
        ("D:\\", "the whole file system"),
        ("c:\\users\\ME", "the home directory"),
        ("C:\\Users", "a directory holding the home directory"),
        ("C:\\Windows\\System32", "a system directory"),
        ("C:\\Users\\me\\AppData\\Roaming", "a credential directory"),
    ],
)
def test_windows_roots_that_are_too_broad_are_dropped(
    monkeypatch: pytest.MonkeyPatch, root: str, why: str
) -> None:
    """On Windows a drive root, the home directory or a system directory is never a root."""
    import ntpath

    from portcullis.wrap import policy

    monkeypatch.setattr(policy, "_os_path", ntpath)
    got = filesystem_roots([*FS, root, "C:\\Users\\me\\src"], home="C:\\Users\\me", project=None)
    assert got == (["C:\\Users\\me\\src"], [f"{root}: {why}"])


def test_a_policy_whose_servers_is_a_list_is_reported_not_crashed_on(tmp_path: Path) -> None:
    """`servers:` written as a list is the user's error to fix: validation fails, no traceback."""
    block = server_block(
        "fs", ["npx", "x"], home=HOME, project=None, sandbox=False, env={}, origin="x"
    )
    text = "version: 1\nservers:\n- a\n"
    after = merge(text, [block])
    with pytest.raises(PolicyError):
        validate(after, str(tmp_path / "p.yaml"), ["fs"])


def test_the_users_defaults_are_never_replaced_by_wider_generated_rules(tmp_path: Path) -> None:
    """Keys the policy's `defaults` sets (tools, paths) are inherited, not generated."""
    existing = (
        "version: 1\ndefaults:\n  tools:\n    default: deny\n    allow: [read_file]\n"
        "  paths:\n    roots: [/srv/only]\nservers: {}\n"
    )
    path = write_config(tmp_path, "claude-desktop")
    plan = plan_wrap([load(path)], options(tmp_path, policy_text=existing))
    assert plan.policy is not None
    validate(plan.policy.after, str(tmp_path / "policy.yaml"), plan.policy.added)
    from portcullis.policy.compile import compile_policy
    from portcullis.policy.parse import parse_policy

    model, lines = parse_policy(plan.policy.after.encode(), "p.yaml")
    compiled = compile_policy(model, digest="x", source="p.yaml", lines=lines)
    fs = compiled.servers["fs"]
    assert fs.tools.default == "deny"
    assert list(fs.roots) == ["/srv/only"]
    assert any("defaults.tools" in n.text for n in plan.files[0].notes)


def test_one_good_root_keeps_the_allow_list_and_says_nothing_about_confirming_all() -> None:
    """A dropped broad root beside a kept one narrows the roots; reads stay allowed."""
    from portcullis.wrap.policy import server_block

    block = server_block(
        "files",
        ["npx", "-y", "@modelcontextprotocol/server-filesystem@2026.8.31", "/", "/srv/app"],
        home="/home/me",
        project=None,
        sandbox=False,
        env={},
        origin="test",
    )
    assert block.value["paths"] == {"roots": ["/srv/app"]}
    assert block.value["tools"]["allow"]
    assert not any("every tool" in note for note in block.notes)
