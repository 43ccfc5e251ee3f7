"""One realistic scan result that every report format is tested against."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from pathlib import Path

from portcullis.scan.baseline import NOTES_KEY, REASONS_KEY
from portcullis.scan.model import ConfigFile, Finding, Rule, ScanError, ScanResult, Server

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
REPO = Path("/work/repo")
PROJECT = REPO / ".mcp.json"
ODD = REPO / "sub dir" / "mcp#1%.json"
CURSOR = Path("/home/dev/.cursor/mcp.json")
BROKEN = "/home/dev/.codeium/windsurf/mcp_config.json"
EVIL_NAME = "evil\x1b[31m[bold]x[/bold]\x07|`x`"
EVIL_EVIDENCE = "\x1b]0;pwned\x07[red]boom[/red] <script>alert(1)</script> @acme/team \u202e"

RULES: dict[str, Rule] = {
    r.id: r
    for r in (
        Rule(
            "plaintext-secret",
            "Plaintext secret in config",
            "critical",
            ("no-production-credentials",),
            "Move the secret to a keyring or ${env:...} reference.",
        ),
        Rule(
            "fs-root-too-broad",
            "File-system access is rooted too broadly",
            "high",
            ("least-privilege", "filtered-sensitive-data"),
            "Give the server only the project directory it needs.",
        ),
        Rule(
            "tool-poisoning",
            "Tool description carries instructions",
            "high",
            ("least-privilege",),
            "Remove the server or pin a reviewed version.",
        ),
        Rule(
            "unpinned-package",
            "Package is not pinned",
            "medium",
            ("vetted-pinned-packages",),
            "Pin an exact version.",
        ),
        Rule(
            "auto-approve",
            "Tools run without confirmation",
            "low",
            ("confirm-destructive",),
            "Turn auto-approval off.",
        ),
        Rule(
            "not-wrapped",
            "Server is not behind Portcullis",
            "info",
            ("audit-logging", "confirm-destructive", "filtered-sensitive-data", "sandboxing"),
            "Run portcullis wrap.",
        ),
    )
}


def _server(name: str, file: Path, line: int, client: str, **positions: int) -> Server:
    pos = {"": line, **{"/" + k.replace("__", "/"): v for k, v in positions.items()}}
    return Server(
        name=name,
        client=client,
        scope="project" if file.is_relative_to(REPO) else "user",
        file=file,
        pointer=f"/mcpServers/{name}",
        line=line,
        transport="stdio",
        command="npx",
        positions=pos,
    )


def make_result() -> ScanResult:
    """Three files, five servers, every severity, an error, a suppressed and a line-less finding."""
    fs = _server("fs", PROJECT, 3, "claude-code", args__2=6)
    db = _server("db", PROJECT, 9, "claude-code", env__DB_PASSWORD=12)
    odd = _server("odd", ODD, 2, "claude-code", args__1=4)
    evil = _server(EVIL_NAME, CURSOR, 2, "cursor", args__1=5)
    web = _server("web", CURSOR, 8, "cursor", args__1=10)
    files = [
        ConfigFile(PROJECT, "claude-code", "project", "json", [fs, db]),
        ConfigFile(ODD, "claude-code", "project", "json", [odd]),
        ConfigFile(CURSOR, "cursor", "user", "json", [evil, web]),
    ]
    cursor_file = files[2]
    r = RULES
    findings = [
        Finding.of(
            r["plaintext-secret"],
            db,
            "DB_PASSWORD holds a plaintext password",
            pointer="/env/DB_PASSWORD",
            evidence="hunt****",
        ),
        Finding.of(
            r["fs-root-too-broad"], fs, "Root / is the whole disk", pointer="/args/2", evidence="/"
        ),
        Finding.of(
            r["tool-poisoning"],
            evil,
            "Tool description tells the model to read ~/.ssh",
            evidence=EVIL_EVIDENCE,
            tool="read_file",
        ),
        Finding.of(
            r["unpinned-package"],
            odd,
            "odd-server is not pinned",
            pointer="/args/1",
            evidence="odd-server@latest",
        ),
        Finding.of(
            r["auto-approve"],
            None,
            "Cursor runs every tool without asking",
            file=cursor_file,
            pointer="/autoApprove",
            line=14,
        ),
        *(Finding.of(r["not-wrapped"], s, f"{s.name} runs unguarded") for s in (fs, db, evil)),
    ]
    # Live inspection does not know a line: the report must not invent one.
    findings[2] = dataclasses.replace(findings[2], line=None)
    suppressed = Finding.of(
        r["unpinned-package"],
        web,
        "web-server is not pinned",
        pointer="/args/1",
        evidence="web-server",
    )
    result = ScanResult(
        files=files,
        findings=findings,
        errors=[ScanError("invalid JSON: Expecting ',' delimiter", file=BROKEN, line=7)],
        suppressed=[suppressed],
        started="2026-11-24T11:59:58Z",
        duration_s=0.4213,
        options={
            "offline": True,
            "fail_on": "high",
            REASONS_KEY: {
                suppressed.fingerprint: {
                    "reason": "internal mirror pins it",
                    "expires": "2027-01-31",
                    "source": "baseline.json:4",
                }
            },
            NOTES_KEY: ["baseline.json:9: the suppression of auto-approve expired on 2026-10-01"],
        },
    )
    return result
