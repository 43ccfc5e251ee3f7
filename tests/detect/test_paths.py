"""Path confinement guard: readings, symlinks on real trees, CVEs and protected paths."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from portcullis.detect.paths import PathGuard, default_protected, is_file_uri, looks_like_path
from portcullis.gateway.pipeline import Allow, Deny

ROOT = "/srv/project"


@pytest.fixture(scope="module")
def guard() -> PathGuard:
    return PathGuard([ROOT], protected=default_protected(None, "/var/lib/portcullis"), cwd=ROOT)


LEGIT = [
    "/srv/project",
    "/srv/project/",
    "/srv/project/README.md",
    "/srv/project//src///main.py",
    "/srv/project/src/./main.py",
    "/srv/project/src/../docs/index.md",
    "/srv/project/etc/passwd",
    "/srv/project/.env",
    "/srv/project/my file with spaces.txt",
    "/srv/project/archive.tar.gz",
    "/srv/project/.hidden/dir/",
    "/srv/project/..foo",
    "/srv/project/foo..",
    "/srv/project/console.log",
    "/srv/project/connect/nul-terminated.md",
    "/srv/project/ünïcödé/日本語.txt",
    "/srv/project/caf%C3%A9.txt",
    "/srv/project/100%.txt",
    "/srv/project/price$.txt",
    "/srv/project/~backup",
    "/srv/project/a~b",
    "README.md",
    "./src/main.py",
    "src/../README.md",
    "",
    ".",
    "file:///srv/project/README.md",
    "file://localhost/srv/project/README.md",
    "FILE:///srv/project/a%20b.txt",
    "file:///srv/project/x.txt?version=2",
    "/srv/project/.mcp.json.example",
    "/srv/project/docs/mcp.json",
    "/srv/project/settings.json",
    "/srv/project/src/components/Button.tsx",
    "/srv/project/node_modules/.bin/tsc",
    "/srv/project/.git/HEAD",
    "/srv/project/.github/workflows/ci.yml",
    "/srv/project/data/2024-01-01.csv",
    "/srv/project/logs/app.log.1",
    "/srv/project/Makefile",
    "/srv/project/a b/c d/e f.md",
    "/srv/project/with-dash_and_underscore",
    "/srv/project/UPPER/lower/MiXeD.TXT",
    "/srv/project/emoji-\U0001f600.png",
    "/srv/project/#hash#.txt",
    "/srv/project/semi;colon.txt",
    "/srv/project/quote'single.txt",
    "/srv/project/paren(1).txt",
    "/srv/project/[brackets].txt",
    "/srv/project/*glob*.txt",
    "/srv/project/question?.txt",
    "/srv/project/plus+sign.txt",
    "/srv/project/comma,separated.txt",
    "/srv/project/equals=sign.txt",
    "/srv/project/at@sign.txt",
    "/srv/project/src/../src/../src/main.py",
    "src/main.py",
    "docs/",
    "./.env.local",
    "a/b/c/../../d",
    "/srv/project/mcp_server.py",
    "/srv/project/.vscode/launch.json",
    "/srv/project/.cursor/rules/style.mdc",
    "/srv/project/etc/shadow.example",
    "/srv/project/src/*.py",
    "/srv/project/{braces}.txt",
    "/srv/project/.gitignore",
    "/srv/project/.config/app.toml",
    "/srv/project/v1.2.3/release notes.md",
]

ATTACKS = [
    ("/etc/passwd", "paths.outside-roots"),
    ("/srv/project/../../etc/passwd", "paths.outside-roots"),
    ("../etc/passwd", "paths.outside-roots"),
    ("/srv/project-evil/x", "paths.outside-roots"),
    ("/srv/projectX", "paths.outside-roots"),
    ("/srv", "paths.outside-roots"),
    ("/", "paths.outside-roots"),
    ("%2e%2e/%2e%2e/etc/passwd", "paths.outside-roots"),
    ("..%2f..%2fetc%2fpasswd", "paths.outside-roots"),
    ("%252e%252e%252fetc", "paths.outside-roots"),
    ("%25252e%25252e/x", "paths.outside-roots"),
    ("..\\..\\etc\\passwd", "paths.outside-roots"),
    ("/srv/project\\..\\..\\etc", "paths.outside-roots"),
    ("C:\\Windows\\System32", "paths.outside-roots"),
    ("c:/windows", "paths.outside-roots"),
    ("\\\\server\\share\\x", "paths.outside-roots"),
    ("\\\\?\\C:\\x", "paths.outside-roots"),
    ("\\\\.\\PhysicalDrive0", "paths.outside-roots"),
    ("/srv/project/CON", "paths.outside-roots"),
    ("/srv/project/nul.txt", "paths.outside-roots"),
    ("/srv/project/COM1 ", "paths.outside-roots"),
    ("/srv/project/.. /x", "paths.outside-roots"),
    ("/srv/project/.../x", "paths.outside-roots"),
    ("file:///etc/passwd", "paths.outside-roots"),
    ("file://localhost/etc/passwd", "paths.outside-roots"),
    ("file:///srv/project/%2e%2e/%2e%2e/etc/passwd", "paths.outside-roots"),
    ("file://attacker.example/share", "paths.outside-roots"),
    ("file:////attacker/share", "paths.outside-roots"),
    ("\uff0e\uff0e\uff0f\uff0e\uff0e\uff0fetc", "paths.outside-roots"),
    ("/srv/project/\uff0e\uff0e/\uff0e\uff0e/etc", "paths.outside-roots"),
    ("..\u2215etc", "paths.outside-roots"),
    ("~/.ssh/id_rsa", "paths.outside-roots"),
    ("~root/.ssh", "paths.outside-roots"),
    ("$HOME/.ssh/id_rsa", "paths.unexpandable"),
    ("${HOME}/x", "paths.unexpandable"),
    ("/srv/project/$(id)", "paths.unexpandable"),
    ("/srv/project/`id`", "paths.unexpandable"),
    ("%APPDATA%\\Claude", "paths.unexpandable"),
    ("%24HOME/x", "paths.unexpandable"),
    ("/srv/project/{..,x}/{..,y}/etc", "paths.unexpandable"),
    ("/srv/project/.*/.*/etc/passwd", "paths.outside-roots"),
    ("/srv/project/.?/x", "paths.outside-roots"),
    ("\uff5e/.ssh/id_rsa", "paths.outside-roots"),
    ("\u2025/\u2025/etc", "paths.outside-roots"),
    ("/srv/project/a\x00.txt", "paths.control-char"),
    ("/srv/project/a%00.txt", "paths.control-char"),
    ("/srv/project/a\nb", "paths.control-char"),
    ("/srv/project/a\x1b[31m", "paths.control-char"),
    ("/srv/project/" + "a" * 5000, "paths.too-long"),
    ("/srv/project/.mcp.json", "paths.protected"),
    ("/srv/project/sub/.cursor/mcp.json", "paths.protected"),
    ("/srv/project/.vscode/mcp.json", "paths.protected"),
    ("/srv/project/.MCP.JSON", "paths.protected"),
    ("/srv/project/.mcp.json.", "paths.protected"),
    ("/srv/project/%2emcp.json", "paths.protected"),
    ("/srv/project/.continue/mcpServers/x.yaml", "paths.protected"),
]


@pytest.mark.parametrize("value", LEGIT)
def test_legitimate_paths_are_allowed(guard: PathGuard, value: str):
    """Ordinary paths inside the root, including scary-looking names, are allowed."""
    verdict = guard.check(value, argument="path")
    assert isinstance(verdict, Allow), verdict


@pytest.mark.parametrize(("value", "rule"), ATTACKS)
def test_attacks_are_denied(guard: PathGuard, value: str, rule: str):
    """Every reading that escapes the root, or lands on a protected file, is denied."""
    verdict = guard.check(value, argument="path")
    assert isinstance(verdict, Deny), value
    assert verdict.rule == rule


def test_there_are_at_least_as_many_legitimate_cases_as_attacks():
    """The suite keeps the false-positive side honest."""
    assert len(LEGIT) + len(LEGIT_TREE) >= len(ATTACKS) + len(ATTACK_TREE)


def test_reason_names_guard_argument_and_normalised_path(guard: PathGuard):
    """The reason is one sentence with the guard, the argument and the normalised path."""
    verdict = guard.check("/srv/project/../../etc/passwd", argument="path")
    assert isinstance(verdict, Deny)
    assert verdict.reason == (
        'paths guard: argument "path": /etc/passwd is outside the allowed roots /srv/project'
    )


def test_reason_is_capped_and_does_not_echo_raw_value(guard: PathGuard):
    """A long or control-laden value never reaches the reason verbatim."""
    secret = "/etc/" + "sk_live_" + "x" * 400
    verdict = guard.check(secret, argument="path")
    assert isinstance(verdict, Deny)
    assert len(verdict.reason) <= 200
    verdict = guard.check("/srv/project/\x00sk_live_abc", argument="path")
    assert isinstance(verdict, Deny)
    assert "sk_live_abc" not in verdict.reason


def test_relative_paths_use_the_servers_cwd_too():
    """A relative path must stay inside when read against the cwd as well as the roots."""
    g = PathGuard([ROOT], cwd="/home/user")
    assert isinstance(g.check("README.md", argument="p"), Deny)
    g = PathGuard([ROOT, "/home/user"], cwd="/home/user")
    assert isinstance(g.check("README.md", argument="p"), Allow)


def test_multiple_roots_each_contain_their_own_paths():
    """With two roots a path inside either one is allowed; a path between them is not."""
    g = PathGuard(["/srv/a", "/srv/b"], cwd="/srv/a")
    assert isinstance(g.check("/srv/b/x", argument="p"), Allow)
    assert isinstance(g.check("/srv/a/x", argument="p"), Allow)
    assert isinstance(g.check("/srv/c", argument="p"), Deny)


def test_empty_roots_means_no_confinement_but_protected_still_applies():
    """No roots: anything goes except protected paths."""
    g = PathGuard([], protected=default_protected("/etc/portcullis.yaml", "/var/lib/pc"), cwd="/")
    assert isinstance(g.check("/etc/hosts", argument="p"), Allow)
    assert g.check("/etc/portcullis.yaml", argument="p").rule == "paths.protected"
    assert g.check("/var/lib/pc/audit.log", argument="p").rule == "paths.protected"
    assert g.check("/var/lib/pc", argument="p").rule == "paths.protected"
    assert g.check("/any/where/.mcp.json", argument="p").rule == "paths.protected"


def test_home_configs_are_protected_even_inside_a_home_root():
    """Client configs in the home directory are denied although the root covers home."""
    home = os.path.expanduser("~")
    g = PathGuard([home], protected=default_protected(None, "/var/lib/pc"), cwd=home)
    for p in (
        "~/.claude.json",
        "~/.claude/settings.json",
        "~/.cursor/mcp.json",
        "~/.codeium/windsurf/mcp_config.json",
        "~/.continue/config.yaml",
        "~/.config/zed/settings.json",
        "~/.gemini/settings.json",
        "~/.codex/config.toml",
        "~/.config/goose/config.yaml",
        "~/.aws/amazonq/mcp.json",
        "~/.config/Code/User/mcp.json",
        "~/Library/Application Support/Claude/claude_desktop_config.json",
        "~/AppData/Roaming/Code/User/settings.json",
        "~/.config/opencode/opencode.json",
        "~/.lmstudio/mcp.json",
    ):
        assert g.check(p, argument="p").rule == "paths.protected", p
    assert isinstance(g.check("~/notes.txt", argument="p"), Allow)


def test_default_protected_lists_policy_state_and_client_configs():
    """The defaults hold the policy file, the state directory and basename patterns."""
    prot = default_protected("/etc/p.yaml", "/var/lib/pc")
    assert "/etc/p.yaml" in prot
    assert "/var/lib/pc" in prot
    for pat in (".mcp.json", ".cursor/mcp.json", ".vscode/mcp.json", "claude_desktop_config.json"):
        assert pat in prot


# --------------------------------------------------------------------------- real trees


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    (root / "src").mkdir(parents=True)
    (root / "src" / "main.py").write_text("x")
    out = tmp_path / "outside"
    out.mkdir()
    (out / "secret").write_text("s")
    (root / "to_out").symlink_to(out)
    (root / "to_secret").symlink_to(out / "secret")
    (root / "to_src").symlink_to(root / "src")
    (root / "rel_src").symlink_to("src")
    (root / "up").symlink_to("..")
    (root / "loop1").symlink_to(root / "loop2")
    (root / "loop2").symlink_to(root / "loop1")
    (root / "dangling_out").symlink_to(out / "not_yet")
    (root / "cfg").symlink_to(root / ".mcp.json")
    return tmp_path


LEGIT_TREE = ["src/main.py", "to_src/main.py", "rel_src/new_file.py", "to_src/../src", "src/new"]
ATTACK_TREE = [
    ("to_out/secret", "paths.symlink-escape"),
    ("to_secret", "paths.symlink-escape"),
    ("to_out/new_file", "paths.symlink-escape"),
    ("up/outside/secret", "paths.outside-roots"),
    ("up", "paths.symlink-escape"),
    ("loop1", "paths.symlink-escape"),
    ("loop1/x", "paths.symlink-escape"),
    ("dangling_out", "paths.symlink-escape"),
    ("to_src/../../outside", "paths.outside-roots"),
]


@pytest.mark.parametrize("rel", LEGIT_TREE)
def test_symlinks_that_stay_inside_are_allowed(tree: Path, rel: str):
    """Symlinks and new files whose real location is inside the root are allowed."""
    root = tree / "root"
    g = PathGuard([str(root)], cwd=str(root))
    assert isinstance(g.check(str(root / rel), argument="p"), Allow)
    assert isinstance(g.check(rel, argument="p"), Allow)


@pytest.mark.parametrize(("rel", "rule"), ATTACK_TREE)
def test_symlinks_that_escape_are_denied(tree: Path, rel: str, rule: str):
    """A symlink inside the root pointing out, or a loop, is denied whatever the spelling."""
    root = tree / "root"
    g = PathGuard([str(root)], cwd=str(root))
    for value in (str(root / rel), rel):
        verdict = g.check(value, argument="p")
        assert isinstance(verdict, Deny), value
        assert verdict.rule in (rule, "paths.outside-roots", "paths.symlink-escape")


def test_symlink_then_dotdot_is_judged_both_ways(tree: Path):
    """`to_out/../outside` is inside lexically but outside for the kernel: denied."""
    root = tree / "root"
    g = PathGuard([str(root)], cwd=str(root))
    assert isinstance(g.check("to_out/../outside/secret", argument="p"), Deny)
    assert isinstance(g.check("to_out/../root/src", argument="p"), Allow)


def test_root_that_is_itself_a_symlink(tree: Path):
    """A root given through a symlink confines to its real target."""
    link = tree / "rootlink"
    link.symlink_to(tree / "root")
    g = PathGuard([str(link)], cwd=str(link))
    assert isinstance(g.check(str(link / "src" / "main.py"), argument="p"), Allow)
    assert isinstance(g.check(str(tree / "root" / "src" / "main.py"), argument="p"), Allow)
    assert isinstance(g.check(str(link / "to_out" / "secret"), argument="p"), Deny)
    assert isinstance(g.check(str(link / ".." / "outside"), argument="p"), Deny)


def test_symlink_to_protected_file_is_denied(tree: Path):
    """A link inside the root that resolves to a protected name is denied."""
    root = tree / "root"
    g = PathGuard([str(root)], protected=[".mcp.json"], cwd=str(root))
    assert g.check("cfg", argument="p").rule == "paths.protected"


def test_hard_link_to_protected_file_is_denied(tree: Path):
    """A hard link to an absolute protected file is recognised by inode."""
    root = tree / "root"
    policy = tree / "policy.yaml"
    policy.write_text("x")
    os.link(policy, root / "innocent.txt")
    g = PathGuard([str(root)], protected=[str(policy)], cwd=str(root))
    assert g.check("innocent.txt", argument="p").rule == "paths.protected"


def test_protected_state_dir_reached_through_symlink(tree: Path):
    """A symlinked route into the state directory is denied."""
    state = tree / "root" / "state"
    state.mkdir()
    (tree / "root" / "s").symlink_to(state)
    g = PathGuard([str(tree / "root")], protected=[str(state)], cwd=str(tree / "root"))
    assert g.check("s/audit.log", argument="p").rule == "paths.protected"


# --------------------------------------------------------------------------- CVEs


def test_cve_2025_53110_prefix_match_bypass(tmp_path: Path):
    """CVE-2025-53110: `/tmp/allowed_dir_sensitive_credentials` is not inside `/tmp/allowed_dir`."""
    allowed = tmp_path / "allowed_dir"
    allowed.mkdir()
    sibling = tmp_path / "allowed_dir_sensitive_credentials"
    sibling.mkdir()
    (sibling / "key").write_text("k")
    g = PathGuard([str(allowed)], cwd=str(allowed))
    assert g.check(str(sibling / "key"), argument="path").rule == "paths.outside-roots"
    assert g.check("../allowed_dir_sensitive_credentials/key", argument="path").rule == (
        "paths.outside-roots"
    )
    assert isinstance(g.check(str(allowed / "ok.txt"), argument="path"), Allow)


def test_cve_2025_53109_symlink_escape(tmp_path: Path):
    """CVE-2025-53109: a symlink in the allowed dir to a sensitive file or dir is refused."""
    allowed = tmp_path / "allowed_dir"
    allowed.mkdir()
    outside = tmp_path / "etc"
    outside.mkdir()
    (outside / "sudoers").write_text("root ALL")
    (allowed / "sudoers_link").symlink_to(outside / "sudoers")
    (allowed / "etc_link").symlink_to(outside)
    g = PathGuard([str(allowed)], cwd=str(allowed))
    assert g.check(str(allowed / "sudoers_link"), argument="path").rule == "paths.symlink-escape"
    # The write path the original fix missed: a new file under a symlinked directory.
    assert g.check(str(allowed / "etc_link" / "cron.d"), argument="path").rule == (
        "paths.symlink-escape"
    )


# --------------------------------------------------------------------------- looks_like_path


@pytest.mark.parametrize(
    "name",
    ["path", "paths", "file", "filename", "file_path", "filePath", "dir", "directory", "folder",
     "source", "destination", "target", "src", "dst", "cwd", "root", "uri", "output_path",
     "configFile", "working_dir", "resource_uri"],
)  # fmt: skip
def test_path_like_names(name: str):
    """Argument names that usually hold paths are recognised."""
    assert looks_like_path(name, None)


@pytest.mark.parametrize("name", ["query", "content", "profile", "message", "limit", "url_text"])
def test_other_names_are_not_path_like(name: str):
    """Ordinary argument names are not paths."""
    assert not looks_like_path(name, None)


def test_schema_format_and_description_mark_paths():
    """`format: uri/path` and a description about files make a property path-like."""
    assert looks_like_path("x", {"type": "string", "format": "uri"})
    assert looks_like_path("x", {"type": "string", "format": "path"})
    assert looks_like_path("x", {"type": "string", "description": "Path to the log"})
    assert looks_like_path("x", {"type": "array", "items": {"format": "path"}})
    assert not looks_like_path("x", {"type": "string", "description": "A greeting"})


def test_is_file_uri():
    """Only `file:` URIs are paths among URI-valued arguments."""
    assert is_file_uri("FILE:///etc/passwd")
    assert not is_file_uri("https://example.com/")
