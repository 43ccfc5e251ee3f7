"""Filesystem reach: broad roots, credential directories and servers with no root."""

from __future__ import annotations

import pytest

from portcullis.scan.checks import paths
from portcullis.scan.checks.paths import classify_path

from ._helpers import rules, srv

FS = "@modelcontextprotocol/server-filesystem@2025.8.21"


@pytest.mark.parametrize(
    ("path", "severity"),
    [
        ("/", "critical"),
        ("//", "critical"),
        ("/tmp/..", "critical"),
        ("C:\\", "critical"),
        ("D:/", "critical"),
        ("c:", "critical"),
        ("~", "high"),
        ("~/", "high"),
        ("$HOME", "high"),
        ("${HOME}", "high"),
        ("${userHome}", "high"),
        ("%USERPROFILE%", "high"),
        ("/home/alice", "high"),
        ("/Users/alice/", "high"),
        ("C:\\Users\\alice", "high"),
        ("/root", "high"),
        ("/home", "high"),
        ("~/.ssh", "critical"),
        ("$HOME/.aws/credentials", "critical"),
        ("/home/bob/.kube", "critical"),
        ("~/.gnupg", "critical"),
        ("~/.config/gcloud", "critical"),
        ("/Users/x/.azure", "critical"),
        ("~/.docker", "critical"),
        ("/etc", "high"),
        ("/etc/ssh", "high"),
        ("file:///", "critical"),
        ("~/src/../", "high"),
    ],
)
def test_broad_paths_are_classified(path: str, severity: str) -> None:
    """Root, drives, homes and credential stores are recognised in every spelling."""
    verdict = classify_path(path)
    assert verdict is not None
    assert verdict[1] == severity


@pytest.mark.parametrize(
    "path",
    [
        "/srv/project",
        "~/src/app",
        "/home/alice/code/app",
        ".",
        "./data",
        "C:\\work\\repo",
        "${workspaceFolder}",
        "/tmp/mcp",
        "~/Documents/notes",
        "/etcetera",
        "~/.sshfoo",
    ],
)
def test_narrow_paths_are_fine(path: str) -> None:
    """Project directories, relative paths and look-alike names are not flagged."""
    assert classify_path(path) is None


def test_filesystem_server_rooted_at_slash_reports_line() -> None:
    """The official filesystem server with / as a root is critical, on the arg's line."""
    s = srv("fs", "npx", ["-y", FS, "/srv/app", "/"])
    out = list(paths.check(s))
    assert rules(out) == ["fs-root-too-broad"]
    assert out[0].severity == "critical"
    assert out[0].line == 16
    assert out[0].pointer == "/mcpServers/fs/args/3"
    assert "portcullis wrap" in out[0].fix


def test_home_directory_root_is_high() -> None:
    """A home directory root is high severity."""
    out = list(paths.check(srv("fs", "npx", ["-y", FS, "/Users/alice"])))
    assert [(f.rule, f.severity) for f in out] == [("fs-root-too-broad", "high")]


def test_credential_directory_is_critical() -> None:
    """Serving ~/.ssh hands over the keys themselves."""
    out = list(paths.check(srv("fs", "npx", ["-y", FS, "~/.ssh"])))
    assert out[0].severity == "critical"
    assert "~/.ssh" in out[0].message


def test_lookalike_filesystem_server_is_recognised() -> None:
    """Third-party filesystem servers are judged like the official one."""
    out = list(paths.check(srv("fs", "npx", ["-y", "mcp-filesystem-server@1.0.0", "~"])))
    assert rules(out) == ["fs-root-too-broad"]


@pytest.mark.parametrize(
    "args",
    [
        ["server.py", "--root", "/"],
        ["server.py", "--allow=/"],
        ["server.py", "--allowed-directories", "/home/me"],
        ["server.py", "--directory", "C:\\"],
    ],
)
def test_directory_flags_of_any_server(args: list[str]) -> None:
    """--root/--allow/--directory style flags are checked on any server."""
    out = list(paths.check(srv("x", "python3", args)))
    assert rules(out) == ["fs-root-too-broad"]


def test_git_server_repository_flag() -> None:
    """`mcp-server-git` --repository / is flagged on the value's line."""
    s = srv("git", "uvx", ["mcp-server-git==0.6.2", "--repository", "/"])
    out = list(paths.check(s))
    assert rules(out) == ["fs-root-too-broad"]
    assert out[0].line == 15


def test_launcher_options_are_not_server_roots() -> None:
    """`uv's` own --directory is where uv runs, not a root given to the server."""
    s = srv("x", "uv", ["run", "--directory", "/home/me", "server.py"])
    assert list(paths.check(s)) == []


def test_filesystem_server_without_root() -> None:
    """A filesystem server with no directory argument relies on client roots (medium)."""
    out = list(paths.check(srv("fs", "npx", ["-y", FS])))
    assert [(f.rule, f.severity) for f in out] == [("fs-no-root", "medium")]
    assert out[0].line == 12


def test_narrow_filesystem_server_is_clean() -> None:
    """A filesystem server rooted at a project directory has no finding."""
    assert list(paths.check(srv("fs", "npx", ["-y", FS, "/home/me/src/app"]))) == []


def test_plain_script_is_clean() -> None:
    """`python3` server.py is not a filesystem finding."""
    assert list(paths.check(srv("x", "python3", ["server.py"]))) == []


def test_non_filesystem_server_positional_slash_is_ignored() -> None:
    """Positional paths only count as roots for filesystem servers."""
    assert list(paths.check(srv("x", "npx", ["-y", "some-tool@1.0.0", "/"]))) == []


def test_wrapped_filesystem_server_is_still_checked() -> None:
    """The inner command of portcullis run is checked, with the real arg index."""
    s = srv("fs", "portcullis", ["run", "--policy", "p.yaml", "--", "npx", "-y", FS, "/"])
    out = list(paths.check(s))
    assert out[0].pointer == "/mcpServers/fs/args/7"
    assert out[0].line == 20


def test_windows_cmd_wrapper_is_seen_through() -> None:
    """`cmd` /c npx … (Windows configs) is parsed as the npx command."""
    s = srv("fs", "cmd", ["/c", "npx", "-y", FS, "C:\\Users\\me"])
    assert rules(paths.check(s)) == ["fs-root-too-broad"]


def test_remote_server_has_no_path_findings() -> None:
    """Remote entries have no command to check."""
    assert list(paths.check(srv("r", url="https://mcp.example.com/mcp"))) == []


@pytest.mark.parametrize(
    ("command", "args"),
    [
        ("node", ["/opt/mcp-filesystem/dist/index.js", "/"]),
        ("mcp-server-filesystem", ["/"]),
        ("node", ["C:\\tools\\server-filesystem\\dist\\index.js", "C:\\"]),
    ],
)
def test_locally_installed_filesystem_servers(command: str, args: list[str]) -> None:
    """Filesystem servers run from a local build or global install are recognised too."""
    assert rules(paths.check(srv("fs", command, args))) == ["fs-root-too-broad"]
