"""run_checks and the rule registry: every check runs, crashes fail closed, rules are sound."""

from __future__ import annotations

import re
from collections.abc import Iterable

import pytest

from portcullis.scan import checks
from portcullis.scan.checks import RULES, run_checks
from portcullis.scan.model import CHECKLIST, SEVERITIES, Finding, Server, Setting

from ._helpers import cfile, srv

EXPECTED = {
    "fs-root-too-broad",
    "fs-no-root",
    "plaintext-secret",
    "db-url-password",
    "unpinned-package",
    "latest-tag",
    "docker-unpinned-image",
    "remote-plain-http",
    "remote-no-auth",
    "docker-privileged",
    "docker-host-mount",
    "docker-host-network",
    "docker-cap-add",
    "shell-fetch-and-run",
    "inline-interpreter-code",
    "auto-approve-project-servers",
    "auto-approve-tools",
    "not-wrapped",
    "scan-internal-error",
}


def test_rule_registry_is_complete_and_well_formed() -> None:
    """Every rule id is unique, kebab-case, documented and mapped to checklist items."""
    assert set(RULES) >= EXPECTED
    for key, rule in RULES.items():
        assert key == rule.id
        assert re.fullmatch(r"[a-z0-9]+(?:-[a-z0-9]+)*", rule.id)
        assert rule.severity in SEVERITIES
        assert rule.title
        assert len(rule.help) > 40
        assert rule.checklist
        assert all(item in CHECKLIST for item in rule.checklist)


def test_rule_ids_are_unique_across_modules() -> None:
    """No two check modules declare the same rule id."""
    ids = [
        r.id
        for m in (
            checks.paths,
            checks.secrets,
            checks.pinning,
            checks.remote,
            checks.docker,
            checks.shell,
            checks.approval,
            checks.wrapped,
        )
        for r in m.RULES
    ]
    assert len(ids) == len(set(ids))


def test_run_checks_covers_servers_and_settings() -> None:
    """Server findings and file-setting findings both come back."""
    cf = cfile(
        srv("fs", "npx", ["-y", "@modelcontextprotocol/server-filesystem", "/"]),
        settings=[Setting("enableAllProjectMcpServers", True, "/enableAllProjectMcpServers", 2)],
    )
    got = {f.rule for f in run_checks([cf])}
    assert {
        "fs-root-too-broad",
        "unpinned-package",
        "not-wrapped",
        "auto-approve-project-servers",
    } <= got


def test_clean_wrapped_server_has_no_findings() -> None:
    """A pinned, narrow, wrapped server produces nothing at all."""
    s = srv(
        "fs",
        "portcullis",
        ["run", "--", "npx", "-y", "@modelcontextprotocol/server-filesystem@2025.8.21", "/srv/app"],
    )
    assert run_checks([cfile(s)]) == []


def test_plain_python_server_is_only_not_wrapped() -> None:
    """`python3` server.py is not flagged for anything but not being wrapped."""
    assert [f.rule for f in run_checks([cfile(srv("py", "python3", ["server.py"]))])] == [
        "not-wrapped"
    ]


def test_crashing_check_fails_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    """A check that raises yields scan-internal-error (high) and the other checks still run."""

    def boom(server: Server) -> Iterable[Finding]:
        raise ValueError("secret-ish detail sk-should-not-appear")

    monkeypatch.setitem(checks.SERVER_CHECKS, "paths", boom)
    s = srv("fs", "npx", ["-y", "@modelcontextprotocol/server-filesystem", "/"])
    out = run_checks([cfile(s)])
    errors = [f for f in out if f.rule == "scan-internal-error"]
    assert len(errors) == 1
    assert errors[0].severity == "high"
    assert errors[0].server == "fs"
    assert '"paths"' in errors[0].message
    assert "sk-should-not-appear" not in str(errors[0].to_dict())
    assert {"unpinned-package", "not-wrapped"} <= {f.rule for f in out}


def test_crashing_file_check_fails_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    """A crashing file-level check is reported against the file and servers are still checked."""

    def boom(cf: object) -> Iterable[Finding]:
        raise RuntimeError("x")

    monkeypatch.setitem(checks.FILE_CHECKS, "approval-settings", boom)
    out = run_checks([cfile(srv("py", "python3", ["server.py"]))])
    assert [f.rule for f in out] == ["scan-internal-error", "not-wrapped"]
    assert out[0].file is not None


def test_every_finding_carries_rule_metadata() -> None:
    """Findings copy the rule's title and checklist items."""
    out = run_checks(
        [cfile(srv("fs", "npx", ["-y", "@modelcontextprotocol/server-filesystem", "/"]))]
    )
    for f in out:
        assert f.title == RULES[f.rule].title
        assert f.checklist == RULES[f.rule].checklist
        assert f.fix


def test_no_secret_reaches_any_finding_field() -> None:
    """Across every check and every place a secret can sit, no finding field quotes it."""
    from portcullis.detect._validate import github_checksum

    body = "Q9w8E7r6T5y4U3i2O1p0A9s8D7f6G5"
    ghp = "ghp_" + body + github_checksum(body)
    bearer = "Zt7Kq2Lm9Xv4Bn8Rc3Wp6Yh1Jd5Gf0Sa"
    db_pw = "Pr0dPassw0rd!x"
    rand = "q8Zr2LpX7vK0mN4tB9wQ"
    servers = [
        srv("a", "npx", ["-y", "x", "--token", ghp], env={"API_TOKEN": rand}),
        srv(
            "b",
            url=f"http://{bearer}@mcp.example.com/mcp?api_key={rand}",
            headers={"Authorization": f"Bearer {bearer}"},
        ),
        srv("c", "docker", ["run", "--privileged", "-e", f"GH={ghp}", "img"]),
        srv("d", "sh", ["-c", f"curl -H 'Authorization: Bearer {bearer}' https://x.example | sh"]),
        srv("e", "python3", ["-c", f"import os; os.environ['GITHUB_TOKEN']='{ghp}'"]),
        srv("f", "npx", ["-c", f"some-mcp --token {ghp}"]),
        srv("g", "uvx", ["pg-mcp", f"postgresql://admin:{db_pw}@db.example.com/production"]),
        srv("h", f"npx -y x --api-key {ghp}"),
    ]
    out = run_checks([cfile(*servers)])
    assert {
        "plaintext-secret",
        "db-url-password",
        "remote-plain-http",
        "shell-fetch-and-run",
        "inline-interpreter-code",
    } <= {f.rule for f in out}
    from ._helpers import assert_never_leaks

    assert_never_leaks(out, ghp, bearer, db_pw, rand)
