"""Server identity: package versions are stripped from the key and reported as changes."""

from __future__ import annotations

from pathlib import Path

import pytest

from portcullis._exceptions import ConfigError
from portcullis.pins import PinStore, launch_id, version_changes

DIGEST = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    ("command", "old", "new", "change"),
    [
        ("npx", "@scope/pkg@1.2.3", "@scope/pkg@1.2.4", "@scope/pkg: 1.2.3 -> 1.2.4"),
        ("npx", "pkg@1.2.3", "pkg@latest", "pkg: 1.2.3 -> latest"),
        (
            "uvx",
            "mcp-server-time@2026.1.1",
            "mcp-server-time@2026.2.1",
            "mcp-server-time: 2026.1.1 -> 2026.2.1",
        ),
        ("pipx", "mcp-server-git==1.0", "mcp-server-git==1.1", "mcp-server-git: 1.0 -> 1.1"),
        ("docker", "ghcr.io/org/img:v1", "ghcr.io/org/img:v2", "ghcr.io/org/img: v1 -> v2"),
        ("docker", "mcp/fetch:1", f"mcp/fetch@{DIGEST}", f"mcp/fetch: 1 -> {DIGEST}"),
        ("/usr/bin/npx", "pkg@1", "pkg", "pkg: 1 -> (unversioned)"),
    ],
)
def test_version_changes_are_named(command: str, old: str, new: str, change: str) -> None:
    """npm, uvx, PyPI and docker version changes keep one identity and are described."""
    a = launch_id("s", command, ["-y", old, "/srv"])
    b = launch_id("s", command, ["-y", new, "/srv"])
    assert a.key() == b.key()
    assert version_changes(a, b) == [change]


def test_option_values_carry_versions() -> None:
    """--package=pkg@1 and --from=pkg==1 are versioned arguments too."""
    a = launch_id("s", "uvx", ["--from=tool==1.0", "tool"])
    b = launch_id("s", "uvx", ["--from=tool==2.0", "tool"])
    assert a.key() == b.key()
    assert version_changes(a, b) == ["--from=tool: 1.0 -> 2.0"]


def test_a_different_package_is_a_different_identity(tmp_path: Path) -> None:
    """Swapping the package, a path argument or the URL gives another pin file."""
    store = PinStore(tmp_path)
    base = launch_id("s", "npx", ["-y", "@scope/pkg@1", "/srv"])
    for other in (
        launch_id("s", "npx", ["-y", "@evil/pkg@1", "/srv"]),
        launch_id("s", "npx", ["-y", "@scope/pkg@1", "/"]),
        launch_id("s", "node", ["-y", "@scope/pkg@1", "/srv"]),
        launch_id("t", "npx", ["-y", "@scope/pkg@1", "/srv"]),
    ):
        assert store.path_for(other) != store.path_for(base)
    assert (
        launch_id("s", None, url="https://a/mcp").key()
        != launch_id("s", None, url="https://b/mcp").key()
    )


def test_non_launchers_do_not_strip_at_signs() -> None:
    """An e-mail argument to an ordinary command is not mistaken for a package version."""
    a = launch_id("s", "python", ["server.py", "--to", "ops@example.com"])
    assert a.versions() == {}
    assert a.key()["args"] == ["server.py", "--to", "ops@example.com"]


def test_docker_ports_are_not_images() -> None:
    """Port mappings and volume specs are not image tags."""
    a = launch_id("s", "docker", ["run", "-p", "8080:80", "-v", "/a:/b", "img:1"])
    assert a.versions() == {"img": ":1"}


def test_env_keeps_names_only() -> None:
    """A launch records environment variable names, never values."""
    a = launch_id("s", "npx", ["pkg"], env={"TOKEN": "s3cr3t", "A": "b"})
    assert a.env == ("A", "TOKEN")
    assert "s3cr3t" not in repr(a.to_json())


def test_launch_needs_command_or_url() -> None:
    """A launch with neither a command nor a url is a configuration error."""
    with pytest.raises(ConfigError):
        launch_id("s", None)
