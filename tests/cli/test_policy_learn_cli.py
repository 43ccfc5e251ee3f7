"""``portcullis policy suggest`` and ``policy test`` through the real CLI, on real chained logs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from portcullis._state import install_key
from portcullis.audit import AuditLog


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    """Run ``python -m portcullis ARGS`` with the test's environment."""
    return subprocess.run(
        [sys.executable, "-m", "portcullis", *args],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        timeout=60,
        check=False,
    )


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project directory with two subdirectories and files."""
    root = tmp_path / "project"
    for sub in ("src", "docs"):
        (root / sub).mkdir(parents=True)
    (root / "src" / "a.py").write_text("x = 1\n")
    (root / "docs" / "b.md").write_text("# b\n")
    return root


def call(rid: int, tool: str, path: str, **extra: Any) -> dict[str, Any]:
    """A digest-mode tools/call record carrying only observed inputs and paths."""
    return {
        "server": "files",
        "session": "s1",
        "direction": "c2s",
        "method": "tools/call",
        "id": rid,
        "tool": tool,
        "args": "hmac-sha256:" + "0" * 64,
        "decision": "allow",
        "rule": "tools.default",
        "observed": {"inputs": {"/path": path}, "paths": [path]},
        **extra,
    }


@pytest.fixture
def log(home: Path, tmp_path: Path, project: Path) -> Path:
    """An intact observe-mode log: a listing, ordinary calls, one traversal, one injection."""
    path = tmp_path / "audit.jsonl"
    audit = AuditLog(path, install_key(home))
    tools = [
        {"name": "read_text_file", "annotations": {"readOnlyHint": True}},
        {"name": "list_directory", "annotations": {"readOnlyHint": True}},
        {"name": "write_file", "annotations": {"readOnlyHint": False, "destructiveHint": True}},
        {"name": "move_file", "annotations": {"readOnlyHint": False}},
    ]
    for record in [
        {"server": "files", "session": "s1", "direction": "s2c", "method": "tools/list",
         "decision": "allow", "rule": "tools.observed", "observed": {"tools": tools}},
        call(1, "list_directory", str(project)),
        call(2, "read_text_file", str(project / "src" / "a.py")),
        call(3, "read_text_file", str(project / "docs" / "b.md")),
        call(4, "read_text_file", f"{project}/../../etc/passwd", decision="deny",
             rule="paths.outside-roots", enforced=False),
        call(5, "write_file", str(project / "src" / "injected.py")),
        {"server": "files", "session": "s1", "direction": "s2c", "method": "tools/call", "id": 5,
         "tool": "write_file", "decision": "flag", "findings": {"injection-instruction": 1}},
    ]:  # fmt: skip
        audit.append(record)
    audit.close()
    return path


CURRENT = """\
version: 1
defaults:
  mode: observe
servers:
  files:
    command: npx
    args: ["-y", "@modelcontextprotocol/server-filesystem", "{root}"]
    env: {{LANG: C}}
    tools: {{default: allow}}
    paths: {{roots: [{root}], arguments: [path]}}
    sandbox: {{required: false, profile: node}}
audit:
  arguments: digest
approvals:
  channels: [tty]
  timeout_s: 30
"""


def test_suggest_prints_a_valid_policy_with_a_comment_on_every_line(
    log: Path, project: Path, tmp_path: Path
) -> None:
    """The YAML validates, comments every line, and learns only from learnable calls."""
    done = cli("policy", "suggest", "--from-audit", str(log))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines and all("#" in line for line in lines)
    out = tmp_path / "suggested.yaml"
    out.write_text(done.stdout)
    valid = cli("policy", "validate", str(out))
    assert valid.returncode == 0, valid.stderr
    entry = yaml.safe_load(done.stdout)["servers"]["files"]
    assert entry["paths"]["roots"] == [str(project)]
    assert entry["tools"] == {
        "default": "deny",
        "allow": ["list_directory", "read_text_file"],
        "confirm": [],
        "deny": ["move_file", "write_file"],  # write_file's only call was flagged
    }
    assert "1 would-be denial" in done.stdout and "1 injection finding" in done.stdout


def test_suggest_keeps_the_current_policy_and_prints_the_diff(
    log: Path, project: Path, tmp_path: Path
) -> None:
    """Launch keys, sandbox, audit and approvals are kept; the changes go to stderr."""
    current = tmp_path / "current.yaml"
    current.write_text(CURRENT.format(root=project))
    out = tmp_path / "out.yaml"
    done = cli(
        "policy", "suggest", "--from-audit", str(log), "--policy", str(current),
        "--output", str(out),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    suggested = yaml.safe_load(out.read_text())
    entry = suggested["servers"]["files"]
    assert entry["command"] == "npx"
    assert entry["args"][-1] == str(project)
    assert entry["env"] == {"LANG": "C"}
    assert entry["sandbox"] == {"required": False, "profile": "node"}
    assert entry["paths"]["arguments"] == ["path"]
    assert suggested["approvals"] == {"channels": ["tty"], "timeout_s": 30}
    assert suggested["audit"] == {"arguments": "digest"}
    assert "servers.files.mode: observe -> enforce" in done.stderr
    assert "servers.files.tools.default: allow -> deny" in done.stderr
    assert cli("policy", "validate", str(out)).returncode == 0


def test_suggest_refuses_a_tampered_log_unless_told(log: Path) -> None:
    """A broken chain exits 2; --allow-unverified learns with a loud warning in the output."""
    lines = log.read_text().splitlines()
    lines[2] = lines[2].replace("read_text_file", "write_file")
    log.write_text("\n".join(lines) + "\n")
    refused = cli("policy", "suggest", "--from-audit", str(log))
    assert refused.returncode == 2
    assert "audit log broken" in refused.stderr and "--allow-unverified" in refused.stderr
    assert refused.stdout == ""
    allowed = cli("policy", "suggest", "--from-audit", str(log), "--allow-unverified")
    assert allowed.returncode == 0
    assert "WARNING" in allowed.stderr
    assert "# WARNING: learned from an UNVERIFIED log" in allowed.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--server", "nope"], "no records of server 'nope'"),
        (["--since", "yesterday"], "is not an RFC 3339 time"),
    ],
)
def test_suggest_errors_exit_2(log: Path, args: list[str], message: str) -> None:
    """An unknown server or an unreadable --since exits 2 with a message."""
    done = cli("policy", "suggest", "--from-audit", str(log), *args)
    assert done.returncode == 2
    assert message in done.stderr


def test_suggest_without_a_log_exits_2(home: Path, tmp_path: Path) -> None:
    """A missing log is an error, not an empty policy."""
    done = cli("policy", "suggest", "--from-audit", str(tmp_path / "none.jsonl"))
    assert (done.returncode, done.stdout) == (2, "")
    assert "no audit log" in done.stderr


def test_suggest_since_leaves_older_calls_out(log: Path) -> None:
    """--since after every call leaves no tool used: all listed tools are denied."""
    done = cli("policy", "suggest", "--from-audit", str(log), "--since", "2999-01-01")
    assert done.returncode == 0, done.stderr
    tools = yaml.safe_load(done.stdout)["servers"]["files"]["tools"]
    assert tools["allow"] == [] and len(tools["deny"]) == 4


def test_policy_test_exit_codes_and_reports(log: Path, project: Path, tmp_path: Path) -> None:
    """Replays name exactly the calls a candidate blocks; exit 1 on a tightening, 0 without."""
    suggested = tmp_path / "suggested.yaml"
    suggested.write_text(cli("policy", "suggest", "--from-audit", str(log)).stdout)
    done = cli("policy", "test", str(suggested), "--against", str(log), "--json")
    # The suggestion blocks only the call it refused to learn from (its result was flagged).
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    assert [(c["kind"], c["subject"], c["count"]) for c in report["changes"]] == [
        ("newly_denied", "write_file", 1)
    ]
    assert (report["replayed"], report["not_replayable"]) == (5, 0)
    allowed = tmp_path / "allowed.yaml"
    allowed.write_text(suggested.read_text().replace("- write_file", "- other_tool"))
    allowed.write_text(
        allowed.read_text().replace("allow:  #", "allow:  #\n        - write_file  #")
    )
    clean = cli("policy", "test", str(allowed), "--against", str(log), "--json")
    assert clean.returncode == 0, clean.stdout
    assert json.loads(clean.stdout)["newly_denied"] == 0
    tightened = tmp_path / "tightened.yaml"
    tightened.write_text(allowed.read_text().replace("- list_directory", "- other_tool2"))
    done = cli("policy", "test", str(tightened), "--against", str(log), "--json")
    assert done.returncode == 1
    changes = json.loads(done.stdout)["changes"]
    assert [(c["kind"], c["subject"], c["count"]) for c in changes] == [
        ("newly_denied", "list_directory", 1)
    ]
    text = cli("policy", "test", str(tightened), "--against", str(log))
    assert text.returncode == 1
    assert "Newly denied" in text.stdout and "list_directory" in text.stdout
    assert "\x1b[" not in text.stdout  # not a terminal: no colour codes


def test_policy_test_errors_exit_2(log: Path, tmp_path: Path) -> None:
    """A missing log or an invalid candidate exits 2."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nservers: {files: {tools: {default: nope}}}\n")
    assert cli("policy", "test", str(bad), "--against", str(log)).returncode == 2
    good = tmp_path / "good.yaml"
    good.write_text("version: 1\nservers: {files: {tools: {default: allow}}}\n")
    missing = cli("policy", "test", str(good), "--against", str(tmp_path / "none.jsonl"))
    assert missing.returncode == 2
    assert "no audit log" in missing.stderr
