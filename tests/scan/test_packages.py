"""package_refs: npm, PyPI and image references read from launch commands, with pointers."""

from __future__ import annotations

from pathlib import Path

import pytest

from portcullis.scan.model import PackageRef, Server
from portcullis.scan.packages import launch, package_refs, parse_docker_run, server_args


def _srv(command: str | None, args: list[str] | None = None) -> Server:
    return Server(
        name="s",
        client="claude-code",
        scope="user",
        file=Path("/c.json"),
        pointer="/mcpServers/s",
        line=1,
        transport="stdio",
        command=command,
        args=args or [],
    )


def _refs(command: str, *args: str) -> list[tuple[str, str, str | None, bool, str]]:
    return [
        (r.ecosystem, r.name, r.version, r.pinned, r.pointer)
        for r in package_refs(_srv(command, list(args)))
    ]


@pytest.mark.parametrize(
    ("command", "args", "expected"),
    [
        (
            "npx",
            ["-y", "@modelcontextprotocol/server-filesystem@2025.8.21", "/srv"],
            [("npm", "@modelcontextprotocol/server-filesystem", "2025.8.21", True, "/args/1")],
        ),
        ("npx", ["--yes", "pkg"], [("npm", "pkg", None, False, "/args/1")]),
        ("npx", ["pkg@latest"], [("npm", "pkg", "latest", False, "/args/0")]),
        ("npx", ["-y", "pkg@^1.2.0"], [("npm", "pkg", "^1.2.0", False, "/args/1")]),
        ("npx", ["-y", "pkg@1.2"], [("npm", "pkg", "1.2", False, "/args/1")]),
        ("npx", ["-y", "pkg@1.2.3-rc.1"], [("npm", "pkg", "1.2.3-rc.1", True, "/args/1")]),
        ("npx", ["-y", "@scope/pkg"], [("npm", "@scope/pkg", None, False, "/args/1")]),
        (
            "npx",
            ["-y", "-p", "@scope/pkg@2.0.0", "bin-name", "--flag"],
            [("npm", "@scope/pkg", "2.0.0", True, "/args/2")],
        ),
        ("npx", ["--package=pkg@1.0.0", "bin"], [("npm", "pkg", "1.0.0", True, "/args/0")]),
        ("npm", ["exec", "--yes", "--", "pkg@1.0.0"], [("npm", "pkg", "1.0.0", True, "/args/3")]),
        ("pnpm", ["dlx", "pkg"], [("npm", "pkg", None, False, "/args/1")]),
        ("yarn", ["dlx", "pkg@3.1.4"], [("npm", "pkg", "3.1.4", True, "/args/1")]),
        ("bunx", ["pkg@1.0.0"], [("npm", "pkg", "1.0.0", True, "/args/0")]),
        (
            "C:\\Program Files\\nodejs\\npx.cmd",
            ["-y", "pkg"],
            [("npm", "pkg", None, False, "/args/1")],
        ),
        ("uvx", ["mcp-server-fetch"], [("pypi", "mcp-server-fetch", None, False, "/args/0")]),
        (
            "uvx",
            ["mcp-server-fetch==2025.4.7"],
            [("pypi", "mcp-server-fetch", "2025.4.7", True, "/args/0")],
        ),
        ("uvx", ["mcp-server-fetch>=1"], [("pypi", "mcp-server-fetch", ">=1", False, "/args/0")]),
        ("uvx", ["ruff@0.6.0"], [("pypi", "ruff", "0.6.0", True, "/args/0")]),
        ("uvx", ["ruff@latest"], [("pypi", "ruff", "latest", False, "/args/0")]),
        (
            "uvx",
            ["--from", "mcp-server-git==0.6.2", "mcp-server-git", "--repository", "."],
            [("pypi", "mcp-server-git", "0.6.2", True, "/args/1")],
        ),
        (
            "uvx",
            ["--python", "3.12", "--from=pkg[cli]==1.0", "cmd"],
            [("pypi", "pkg", "1.0", True, "/args/2")],
        ),
        (
            "uvx",
            ["--with", "extra", "tool==1.0"],
            [("pypi", "tool", "1.0", True, "/args/2"), ("pypi", "extra", None, False, "/args/1")],
        ),
        ("uv", ["tool", "run", "pkg==2.0"], [("pypi", "pkg", "2.0", True, "/args/2")]),
        ("pipx", ["run", "pkg"], [("pypi", "pkg", None, False, "/args/1")]),
        ("pipx", ["run", "--spec", "pkg==1.0", "app"], [("pypi", "pkg", "1.0", True, "/args/2")]),
        (
            "docker",
            ["run", "-i", "--rm", "-e", "A=b", "mcp/github"],
            [("docker", "mcp/github", None, False, "/args/5")],
        ),
        (
            "docker",
            ["run", "-i", "registry.example.com:5000/team/mcp:1.2"],
            [("docker", "registry.example.com:5000/team/mcp", "1.2", False, "/args/2")],
        ),
        (
            "podman",
            ["run", "--rm", "img@sha256:" + "c" * 64],
            [("docker", "img", "sha256:" + "c" * 64, True, "/args/2")],
        ),
    ],
)
def test_package_refs(
    command: str, args: list[str], expected: list[tuple[str, str, str | None, bool, str]]
) -> None:
    """Each launcher's syntax yields the package, version, pin state and argument pointer."""
    assert _refs(command, *args) == expected


@pytest.mark.parametrize(
    ("command", "args"),
    [
        ("python3", ["server.py"]),
        ("python", ["-m", "pip", "install", "x"]),
        ("node", ["s.js"]),
        ("npx", ["-y", "./local"]),
        ("uvx", ["--from", ".", "cmd"]),
        ("docker", ["ps"]),
        ("docker", ["exec", "-i", "c", "mcp"]),
    ],
)
def test_not_package_launches(command: str, args: list[str]) -> None:
    """Scripts, pip itself, local paths and non-run docker commands are not references."""
    assert package_refs(_srv(command, args)) == []


def test_remote_server_has_no_refs() -> None:
    """A URL-only entry runs nothing locally."""
    assert package_refs(_srv(None)) == []


def test_spec_is_the_argument_as_written() -> None:
    """`spec` keeps the original text; name and version are split out."""
    ref = package_refs(_srv("npx", ["-y", "@a/b@1.0.0"]))[0]
    assert ref == PackageRef("npm", "@a/b", "1.0.0", True, "@a/b@1.0.0", "/args/1")


def test_git_references_pin_only_on_commit() -> None:
    """A git URL is pinned only by a full commit hash."""
    sha = "0123456789abcdef0123456789abcdef01234567"
    unpinned = package_refs(
        _srv("uvx", ["--from", "git+https://example.com/o/r@main", "x"]), direct=True
    )
    pinned = package_refs(
        _srv("uvx", ["--from", f"git+https://example.com/o/r@{sha}", "x"]), direct=True
    )
    assert unpinned[0].pinned is False
    assert pinned[0].pinned is True
    assert pinned[0].version == sha


def test_portcullis_run_is_seen_through_with_real_pointers() -> None:
    """`portcullis` run [opts] -- CMD: refs of the inner command at the real args index."""
    s = _srv(
        "portcullis", ["run", "--policy", "p.yaml", "--server", "x", "--", "npx", "-y", "pkg@1.0.0"]
    )
    assert _refs_of(s) == [("pkg", "/args/8")]
    assert launch(s).wrapped is True


def test_python_m_portcullis_run() -> None:
    """`python` -m portcullis run -- uvx pkg is wrapped and analysed."""
    s = _srv("python3", ["-m", "portcullis", "run", "--", "uvx", "pkg"])
    assert _refs_of(s) == [("pkg", "/args/5")]
    assert launch(s).wrapped is True


def test_cmd_c_wrapper_windows() -> None:
    """`cmd` /c npx … is the npx command (not wrapped by Portcullis)."""
    s = _srv("cmd", ["/c", "npx", "-y", "pkg"])
    assert _refs_of(s) == [("pkg", "/args/3")]
    assert launch(s).wrapped is False


def test_whole_command_in_one_string() -> None:
    """A command line written entirely in "command" is split; pointers are /command."""
    assert _refs_of(_srv("npx -y pkg@1.0.0", [])) == [("pkg", "/command")]


def _refs_of(s: Server) -> list[tuple[str, str]]:
    return [(r.name, r.pointer) for r in package_refs(s)]


def test_server_args_after_package() -> None:
    """`server_args` are what the server receives after the launcher and package."""
    s = _srv("npx", ["-y", "pkg@1.0.0", "--root", "/srv"])
    assert [t.value for t in server_args(s)] == ["--root", "/srv"]
    assert [t.value for t in server_args(_srv("python3", ["-u", "s.py", "--x"]))] == ["--x"]


def test_docker_run_options_parse() -> None:
    """Docker options with values, = forms and attached short values are parsed in order."""
    s = _srv("docker", ["run", "-i", "--rm", "--network=host", "-v", "/a:/b", "-eX=1", "img", "-v"])
    run = parse_docker_run(launch(s).tokens)
    assert run is not None
    assert run.image is not None
    assert run.image.value == "img"
    flags = [(f, v.value if v else None) for f, v, _ in run.options]
    assert flags == [
        ("-i", None),
        ("--rm", None),
        ("--network", "host"),
        ("-v", "/a:/b"),
        ("-e", "X=1"),
    ]


def test_refs_inside_shell_scripts() -> None:
    """`bash -c "source nvm.sh && npx -y pkg"` yields pkg, pointing at the script argument."""
    s = _srv("bash", ["-lc", "source ~/.nvm/nvm.sh && exec npx -y pkg@1.0.0 /srv; uvx other"])
    assert [(r.name, r.pinned, r.pointer) for r in package_refs(s)] == [
        ("pkg", True, "/args/1"),
        ("other", False, "/args/1"),
    ]
    assert server_args(s) == []


def test_refs_inside_cmd_script_with_operators() -> None:
    """`cmd /c "set X=1 && npx -y pkg"` is read segment by segment."""
    s = _srv("cmd", ["/c", "cd C:\\work && npx -y pkg"])
    assert [(r.name, r.pointer) for r in package_refs(s)] == [("pkg", "/args/1")]


@pytest.mark.parametrize(
    ("command", "args"),
    [
        ("uvx", ["--from", "git+https://example.com/o/r", "x"]),
        ("npx", ["-y", "github:o/r"]),
        ("npx", ["-y", "o/r"]),
        ("npx", ["-y", "https://example.com/p.tgz"]),
    ],
)
def test_direct_sources_only_on_request(command: str, args: list[str]) -> None:
    """Git and URL sources are not registry names: listed only with direct=True."""
    s = _srv(command, args)
    assert package_refs(s) == []
    assert len(package_refs(s, direct=True)) == 1


def test_a_long_version_argument_is_read_in_linear_time() -> None:
    """`uvx pkg@1.1.1…!` of 100k characters does not backtrack for minutes."""
    import time

    hostile = "mcp-x@1" + ".1" * 50_000 + "!"
    started = time.perf_counter()
    package_refs(_srv("uvx", [hostile]))
    assert time.perf_counter() - started < 2.0


@pytest.mark.parametrize(
    ("spec", "pinned"), [("mcp-x@1.2.3", True), ("mcp-x@v2.0rc1", True), ("mcp-x@latest", False)]
)
def test_exact_pypi_versions_still_pinned(spec: str, pinned: bool) -> None:
    """The simpler version pattern accepts the same exact versions as before."""
    (ref,) = package_refs(_srv("uvx", [spec]))
    assert ref.pinned is pinned
