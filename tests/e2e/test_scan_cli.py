"""`portcullis scan` through the real CLI: exit codes, the JSON contract, SARIF, baselines."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

SCHEMA = Path(__file__).parents[1] / "scan" / "data" / "sarif-2.1.0-rtm.5.json"
TOKEN = "ghp_" + "Zq8mR2vX7kP4nW9tY3bL6cJ1hF5dG0sA8eQ2"

RISKY = """{
  // a Cursor config, with a comment and a trailing comma
  "mcpServers": {
    "files": {
      "command": "npx",
      "args": ["-y", "@modelcontextprotocol/server-filesystem", "/"],
    },
    "github": {
      "command": "npx",
      "args": ["-y", "@modelcontextprotocol/server-github@1.0.0"],
      "env": {"GITHUB_PERSONAL_ACCESS_TOKEN": "@@TOKEN@@"}
    }
  }
}
""".replace("@@TOKEN@@", TOKEN)

QUIET = """{
  "mcpServers": {
    "time": {"command": "uvx", "args": ["mcp-server-time==2026.10.19"]}
  }
}
"""


@pytest.fixture
def machine(tmp_path: Path) -> dict[str, str]:
    """An environment whose HOME and state directory are empty folders of the test."""
    home = tmp_path / "home"
    home.mkdir()
    state = tmp_path / "state"
    return {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "PORTCULLIS_HOME": str(state),
        "XDG_CONFIG_HOME": str(home / ".config"),
    }


def scan(
    env: dict[str, str], *args: str, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "portcullis", "scan", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd or Path(env["HOME"]),
        stdin=subprocess.DEVNULL,
        timeout=120,
        check=False,
    )


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_findings_exit_1_with_the_json_contract(machine, tmp_path):
    """High findings exit 1; every finding has the contract's fields and a real line."""
    config = write(tmp_path / "mcp.json", RISKY)
    proc = scan(machine, "--offline", "--format", "json", str(config))
    assert proc.returncode == 1, proc.stderr
    report = json.loads(proc.stdout)
    assert report["version"] == 1
    assert report["errors"] == []
    for finding in report["findings"]:
        assert {
            "rule",
            "severity",
            "client",
            "file",
            "line",
            "server",
            "message",
            "evidence",
            "fix",
        } <= finding.keys()
    by_rule = {(f["rule"], f["server"]): f for f in report["findings"]}
    root = by_rule[("fs-root-too-broad", "files")]
    assert root["line"] == 6
    assert root["file"] == str(config)
    secret = next(
        f for f in report["findings"] if f["server"] == "github" and f["rule"] == "plaintext-secret"
    )
    assert secret["line"] == 11


def test_secrets_never_reach_any_report(machine, tmp_path):
    """The token in the config appears in no format's output."""
    config = write(tmp_path / "mcp.json", RISKY)
    for fmt in ("json", "sarif", "markdown", "text"):
        proc = scan(machine, "--offline", "--no-color", "--format", fmt, str(config))
        assert proc.returncode == 1, proc.stderr
        assert TOKEN not in proc.stdout
        assert TOKEN[8:30] not in proc.stdout


def test_a_broken_config_exits_2_and_names_the_line(machine, tmp_path):
    """A file that does not parse is an error with its line, and the scan exits 2."""
    good = write(tmp_path / "good" / "mcp.json", QUIET)
    bad = write(
        tmp_path / "bad" / "mcp.json", '{\n  "mcpServers": {\n    "x": {"command": "a",,}\n  }\n}\n'
    )
    proc = scan(machine, "--offline", "--format", "json", str(good), str(bad))
    assert proc.returncode == 2
    report = json.loads(proc.stdout)
    (error,) = report["errors"]
    assert error["file"] == str(bad)
    assert error["line"] == 3


def test_a_clean_config_exits_0_unless_the_threshold_is_lower(machine, tmp_path):
    """Only informational findings: exit 0 at the default threshold, 1 with --fail-on info."""
    config = write(tmp_path / "mcp.json", QUIET)
    proc = scan(machine, "--offline", "--format", "json", str(config))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    severities = {f["severity"] for f in json.loads(proc.stdout)["findings"]}
    assert severities <= {"info", "low"}
    assert scan(machine, "--offline", "--fail-on", "info", str(config)).returncode == 1


def test_missing_path_exits_2(machine, tmp_path):
    """A path that does not exist is an error, not an empty clean scan."""
    proc = scan(machine, "--offline", "--format", "json", str(tmp_path / "nope.json"))
    assert proc.returncode == 2
    assert json.loads(proc.stdout)["errors"]


def test_discovery_finds_the_clients_of_home(machine, tmp_path):
    """Without paths the scan reads the user's clients: Cursor and Claude Code's projects."""
    home = Path(machine["HOME"])
    write(home / ".cursor" / "mcp.json", RISKY)
    project = home / "work" / "app"
    project.mkdir(parents=True)
    claude = {
        "projects": {
            str(project): {"mcpServers": {"local-time": json.loads(QUIET)["mcpServers"]["time"]}}
        }
    }
    write(home / ".claude.json", json.dumps(claude, indent=2))
    proc = scan(machine, "--offline", "--format", "json", cwd=project)
    assert proc.returncode == 1, proc.stderr
    report = json.loads(proc.stdout)
    clients = {(f["client"], Path(f["path"]).name) for f in report["files"]}
    assert ("cursor", "mcp.json") in clients
    assert ("claude-code", ".claude.json") in clients
    servers = {s for f in report["files"] for s in f["servers"]}
    assert {"files", "github", "local-time"} <= servers


def test_sarif_validates_and_points_at_real_lines(machine, tmp_path):
    """SARIF written with --output validates against the 2.1.0 schema, with real start lines."""
    config = write(tmp_path / "repo" / ".cursor" / "mcp.json", RISKY)
    out = tmp_path / "scan.sarif"
    proc = scan(
        machine,
        "--offline",
        "--format",
        "sarif",
        "-o",
        str(out),
        str(config),
        cwd=tmp_path / "repo",
    )
    assert proc.returncode == 1, proc.stderr
    sarif = json.loads(out.read_text())
    jsonschema.validate(sarif, json.loads(SCHEMA.read_text()))
    results = sarif["runs"][0]["results"]
    lines = {
        r["ruleId"]: r["locations"][0]["physicalLocation"]["region"]["startLine"]
        for r in results
        if r["ruleId"] in ("fs-root-too-broad", "plaintext-secret")
    }
    assert lines == {"fs-root-too-broad": 6, "plaintext-secret": 11}
    uri = results[0]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
    assert uri == ".cursor/mcp.json"


def test_a_baseline_accepts_todays_findings_but_not_new_ones(machine, tmp_path):
    """--update-baseline records the findings; the next scan passes until a new one appears."""
    config = write(tmp_path / "mcp.json", RISKY)
    baseline = tmp_path / "baseline.json"
    proc = scan(machine, "--offline", "--baseline", str(baseline), "--update-baseline", str(config))
    assert proc.returncode == 0, proc.stderr
    proc = scan(machine, "--offline", "--format", "json", "--baseline", str(baseline), str(config))
    assert proc.returncode == 0, proc.stdout
    report = json.loads(proc.stdout)
    assert report["suppressed"]
    assert all(f["severity"] in ("info", "low", "medium") for f in report["findings"])
    db = '"db": {"command": "uvx", "args": ["mcp-server-time==2026.10.19"], "env": {"DATABASE_URL": "postgresql://admin:hunter2hunter2@db.prod.example/production"}},'
    config.write_text(RISKY.replace('"github": {', db + '\n    "github": {'))
    proc = scan(machine, "--offline", "--format", "json", "--baseline", str(baseline), str(config))
    assert proc.returncode == 1
    assert any(f["rule"] == "db-url-password" for f in json.loads(proc.stdout)["findings"])


def test_the_last_report_is_kept_in_the_state_directory(machine, tmp_path):
    """Each scan leaves its JSON report in <state>/scan/last.json, private to the user."""
    config = write(tmp_path / "mcp.json", RISKY)
    scan(machine, "--offline", str(config))
    last = Path(machine["PORTCULLIS_HOME"]) / "scan" / "last.json"
    assert json.loads(last.read_text())["version"] == 1
    assert last.stat().st_mode & 0o077 == 0


def test_yes_without_inspect_is_a_usage_error(machine, tmp_path):
    """--yes alone would silently do nothing: it is refused with exit 2."""
    proc = scan(machine, "--yes", str(write(tmp_path / "mcp.json", QUIET)))
    assert proc.returncode == 2
    assert "--inspect" in proc.stderr


def test_deep_offline_is_a_usage_error(machine, tmp_path):
    """--deep --offline would scan no package code yet look complete: refused with exit 2."""
    proc = scan(machine, "--deep", "--offline", str(write(tmp_path / "mcp.json", QUIET)))
    assert proc.returncode == 2
    assert "--offline" in proc.stderr


def test_progress_line_never_obeys_control_characters() -> None:
    """A server name with ESC, OSC 8 or bidi controls reaches the status line escaped."""
    from portcullis.cli.scan import _Progress

    shown: list[str] = []

    class Status:
        def update(self, text: str) -> None:
            shown.append(text)

    progress = _Progress(enabled=False)
    progress._status = Status()
    progress.update('inspecting "\x1b]8;;https://evil.invalid\x07x\x1b]8;;\x07\u202e\r"')
    (text,) = shown
    assert not any(ch in text for ch in "\x1b\x07\r\u202e")
    assert "\\u001b" in text


def test_a_crash_anywhere_exits_2_not_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An unexpected exception in the scan is exit 2 (incomplete), with no exception text."""
    from portcullis.cli.main import main

    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("ghp_quoted_from_a_config")

    monkeypatch.setattr("portcullis.scan.scanner.scan", boom)
    config = write(tmp_path / ".mcp.json", QUIET)
    assert main(["scan", "--offline", str(config)]) == 2
    err = capsys.readouterr().err
    assert "RuntimeError" in err and "ghp_" not in err


def test_a_closed_pipe_is_not_a_clean_scan(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A reader that goes away before the report is written never gets exit 0."""
    from portcullis.cli.main import main

    class Closed:
        def write(self, text: str) -> int:
            raise BrokenPipeError

        def flush(self) -> None:
            raise BrokenPipeError

    monkeypatch.setenv("PORTCULLIS_HOME", str(tmp_path / "state"))
    config = write(tmp_path / ".mcp.json", QUIET)
    monkeypatch.setattr(sys, "stdout", Closed())
    assert main(["scan", "--offline", "--fail-on", "critical", str(config)]) == 2
