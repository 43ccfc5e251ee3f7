"""Look-alike names of well-known MCP packages, and the known-malicious list."""

from __future__ import annotations

import pytest

from portcullis.scan.vet.typosquat import (
    distance,
    known_malicious,
    look_alike,
    malicious_issue,
    typosquat_issue,
    well_known,
)

from .conftest import npm_ref, pypi_ref

SQUATS = [
    ("npm", "@modelcontextprotocol/server-filesytem", "@modelcontextprotocol/server-filesystem"),
    ("npm", "@modelcontextprotcol/server-filesystem", "@modelcontextprotocol/server-filesystem"),
    ("npm", "@modelcontextprotocol/server-fi1esystem", "@modelcontextprotocol/server-filesystem"),
    ("npm", "modelcontextprotocol-server-filesystem", "@modelcontextprotocol/server-filesystem"),
    ("npm", "@mcp-tools/server-filesystem", "@modelcontextprotocol/server-filesystem"),
    ("npm", "@modelcontextprotocol/server-rnemory", "@modelcontextprotocol/server-memory"),
    ("pypi", "mcp-server-gti", "mcp-server-git"),
    ("pypi", "mcp-server-fecth", "mcp-server-fetch"),
    ("pypi", "mcp-servers-fetch", "mcp-server-fetch"),
    ("pypi", "mcp_server_tirne", "mcp-server-time"),
]
LEGIT = [
    ("npm", "@modelcontextprotocol/server-filesystem"),
    ("npm", "@modelcontextprotocol/server-github"),
    ("npm", "@modelcontextprotocol/server-gitlab"),
    ("npm", "@playwright/mcp"),
    ("npm", "@acme/mcp"),  # a generic tail many vendors share
    ("npm", "@acme/mcp-server"),
    ("npm", "express"),
    ("npm", "mcp-server-kubernetes"),
    ("pypi", "mcp-server-git"),
    ("pypi", "mcp_server_git"),  # the same project under PEP 503
    ("pypi", "mcp-server-time"),
    ("pypi", "mcpo"),  # one edit from "mcp", but short names are left alone
    ("pypi", "requests"),
    ("pypi", "mcp-server-gitee"),
]


@pytest.mark.parametrize(("ecosystem", "name", "target"), SQUATS)
def test_squats_are_caught(ecosystem: str, name: str, target: str) -> None:
    """Misspellings, look-alike characters and scope swaps point at the real package."""
    found = look_alike(ecosystem, name)
    assert found is not None and found[0] == target


@pytest.mark.parametrize(("ecosystem", "name"), LEGIT)
def test_legitimate_names_pass(ecosystem: str, name: str) -> None:
    """Well-known names and unrelated ones are not look-alikes."""
    assert look_alike(ecosystem, name) is None


def test_typosquat_issue_wording() -> None:
    """Within the official scope the message says it is most likely a typo."""
    issue = typosquat_issue(npm_ref("@modelcontextprotocol/server-filesytem", "1.0.0"))
    assert issue is not None and issue.rule == "package-typosquat"
    assert "typo" in issue.message
    issue = typosquat_issue(pypi_ref("mcp-server-gti"))
    assert issue is not None and "mcp-server-git" in issue.message
    assert typosquat_issue(pypi_ref("mcp-server-git", "2025.1.1")) is None


def test_distance_counts_swaps_as_one() -> None:
    """Transpositions are one edit; the cap bounds the work."""
    assert distance("git", "gti") == 1
    assert distance("kitten", "sitting") == 3
    assert distance("a" * 50, "b" * 50, limit=3) == 3


def test_data_lists_load() -> None:
    """Both data files parse, and every malicious entry names its source."""
    assert "@modelcontextprotocol/server-filesystem" in well_known()["npm"]
    assert "mcp-server-fetch" in well_known()["pypi"]
    assert all(entry.source for entry in known_malicious())
    assert any(entry.name == "postmark-mcp" for entry in known_malicious())


def test_malicious_versions() -> None:
    """postmark-mcp: 1.0.16+ critical, earlier high, unpinned critical, others nothing."""
    hit = malicious_issue(npm_ref("postmark-mcp", "1.0.18"))
    assert hit is not None and hit.severity is None  # the rule's default: critical
    early = malicious_issue(npm_ref("postmark-mcp", "1.0.15"))
    assert early is not None and early.severity == "high"
    unpinned = malicious_issue(npm_ref("postmark-mcp"))
    assert unpinned is not None and "not pinned" in unpinned.message
    resolved = malicious_issue(npm_ref("postmark-mcp", "^1.0.0", pinned=False), "1.0.16")
    assert resolved is not None and resolved.severity is None
    assert malicious_issue(npm_ref("postmark", "1.0.16")) is None
    assert malicious_issue(pypi_ref("postmark-mcp", "1.0.16")) is None
