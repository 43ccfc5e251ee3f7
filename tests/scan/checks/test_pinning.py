"""Unpinned npm/PyPI packages, 'latest' and container images without digests."""

from __future__ import annotations

import pytest

from portcullis.scan.checks import pinning

from ._helpers import rules, srv


@pytest.mark.parametrize(
    ("command", "args", "rule", "severity"),
    [
        ("npx", ["-y", "@modelcontextprotocol/server-memory"], "unpinned-package", "medium"),
        ("npx", ["-y", "some-mcp@^1.2.0"], "unpinned-package", "medium"),
        ("npx", ["--yes", "some-mcp@~1.2"], "unpinned-package", "medium"),
        ("npx", ["-y", "some-mcp@latest"], "latest-tag", "medium"),
        ("npx", ["-y", "some-mcp@next"], "unpinned-package", "medium"),
        ("pnpm", ["dlx", "some-mcp"], "unpinned-package", "medium"),
        ("bunx", ["some-mcp@>=1"], "unpinned-package", "medium"),
        ("uvx", ["mcp-server-fetch"], "unpinned-package", "medium"),
        ("uvx", ["mcp-server-fetch>=1.0"], "unpinned-package", "medium"),
        ("uvx", ["mcp-server-fetch@latest"], "latest-tag", "medium"),
        ("pipx", ["run", "mcp-server-time"], "unpinned-package", "medium"),
        ("docker", ["run", "-i", "--rm", "mcp/fetch"], "docker-unpinned-image", "medium"),
        ("docker", ["run", "-i", "--rm", "mcp/fetch:latest"], "latest-tag", "medium"),
        ("docker", ["run", "-i", "--rm", "ghcr.io/org/mcp:1.4"], "docker-unpinned-image", "low"),
    ],
)
def test_unpinned_references(command: str, args: list[str], rule: str, severity: str) -> None:
    """Missing versions, ranges, dist-tags and image tags are flagged with calibrated severity."""
    out = list(pinning.check(srv("p", command, args)))
    assert [(f.rule, f.severity) for f in out] == [(rule, severity)]
    assert out[0].fix


def test_finding_points_at_the_package_argument() -> None:
    """The finding is on the line of the package argument, with the spec as evidence."""
    out = list(pinning.check(srv("p", "npx", ["-y", "some-mcp", "--flag"])))
    assert out[0].line == 14
    assert out[0].pointer == "/mcpServers/p/args/1"
    assert out[0].evidence == "some-mcp"
    assert '"some-mcp@<version>"' in out[0].fix


@pytest.mark.parametrize(
    ("command", "args"),
    [
        ("npx", ["-y", "@modelcontextprotocol/server-memory@2025.8.4"]),
        ("npx", ["-y", "some-mcp@1.2.3-beta.1"]),
        ("uvx", ["mcp-server-fetch==2025.4.7"]),
        ("uvx", ["--from", "mcp-server-git==0.6.2", "mcp-server-git"]),
        ("pipx", ["run", "--spec", "mcp-server-time==0.6.2", "mcp-server-time"]),
        ("docker", ["run", "-i", "--rm", "mcp/fetch@sha256:" + "a" * 64]),
        ("python3", ["server.py"]),
        ("node", ["/opt/mcp/index.js"]),
        ("npx", ["-y", "./local-server"]),
    ],
)
def test_pinned_and_local_are_clean(command: str, args: list[str]) -> None:
    """Exact versions, digests, local scripts and local paths are not findings."""
    assert list(pinning.check(srv("p", command, args))) == []


def test_wrapped_inner_package_is_checked() -> None:
    """An unpinned package inside portcullis run is reported at its real index."""
    s = srv("p", "portcullis", ["run", "--", "npx", "-y", "some-mcp"])
    out = list(pinning.check(s))
    assert rules(out) == ["unpinned-package"]
    assert out[0].pointer == "/mcpServers/p/args/4"


def test_each_npx_package_flag_is_checked() -> None:
    """`npx` -p a -p b@1.0.0 bin: only the unpinned -p package is flagged."""
    out = list(pinning.check(srv("p", "npx", ["-p", "a", "-p", "b@1.0.0", "bin"])))
    assert [f.evidence for f in out] == ["a"]


def test_token_in_git_url_is_not_quoted() -> None:
    """A git URL carrying a token is reported with the token masked."""
    token = "Zt7Kq2Lm9Xv4Bn8Rc3Wp6Yh1Jd5Gf0Sa"
    s = srv("p", "uvx", ["--from", f"git+https://{token}@git.example.com/o/r@main", "cmd"])
    out = list(pinning.check(s))
    assert [f.rule for f in out] == ["unpinned-package"]
    from ._helpers import assert_never_leaks

    assert_never_leaks(out, token)
