"""``portcullis check``: one decision as JSON, with the exit codes of the contract."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

POLICY = """\
version: 1
servers:
  files:
    tools:
      default: deny
      allow: [read_text_file, "search_*"]
      confirm: [write_file]
      deny: ["*delete*"]
  watch:
    mode: observe
    tools: {default: deny}
"""


@pytest.fixture
def policy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PORTCULLIS_HOME", str(tmp_path / "home"))
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY)
    return path


def check(policy: Path, *args: str) -> tuple[int, dict[str, object]]:
    done = subprocess.run(
        [sys.executable, "-m", "portcullis", "check", "--policy", str(policy), *args],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        timeout=60,
        check=False,
    )
    return done.returncode, json.loads(done.stdout)


@pytest.mark.parametrize(
    ("tool", "code", "decision", "rule"),
    [
        ("read_text_file", 0, "allow", "tools.allow"),
        ("search_files", 0, "allow", "tools.allow"),
        ("write_file", 1, "confirm", "tools.confirm"),
        ("delete_file", 1, "deny", "tools.deny"),
        ("move_file", 1, "deny", "tools.default"),
        ("Read_Text_File", 1, "deny", "tools.default"),
    ],
)
def test_decisions_and_exit_codes(
    policy: Path, tool: str, code: int, decision: str, rule: str
) -> None:
    """Each rule kind gives its decision, rule id and exit code (0 allow, 1 deny or confirm)."""
    rc, out = check(policy, "--server", "files", "--tool", tool, "--args", '{"path": "/x"}')
    assert rc == code
    assert out["decision"] == decision
    assert out["rule"] == rule
    assert tool in str(out["reason"])
    assert "enforced" not in out


def test_observe_mode_says_not_enforced(policy: Path) -> None:
    """In observe mode the decision carries "enforced": false."""
    rc, out = check(policy, "--server", "watch", "--tool", "anything")
    assert rc == 1
    assert out["decision"] == "deny"
    assert out["enforced"] is False


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--server", "nope", "--tool", "x"], "nope"),
        (["--server", "files", "--tool", "x", "--args", "{bad"], "--args"),
        (["--server", "files", "--tool", "x", "--args", "[1]"], "object"),
        (["--server", "files", "--tool", "x", "--args", '{"a": 1, "a": 2}'], "duplicate"),
        (["--tool", "x"], "--server"),
    ],
)
def test_errors_exit_2_with_json(policy: Path, args: list[str], message: str) -> None:
    """A bad server name, bad --args or an ambiguous choice exits 2 with {"error": ...}."""
    rc, out = check(policy, *args)
    assert rc == 2
    assert message in str(out["error"])


def test_invalid_policy_exits_2_naming_the_line(tmp_path: Path) -> None:
    """An invalid policy file exits 2 and the error names the file and line."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nservers:\n  files:\n    tools: {default: maybe}\n")
    rc, out = check(bad, "--server", "files", "--tool", "x")
    assert rc == 2
    assert "bad.yaml:4" in str(out["error"])


ARGS_POLICY = """\
version: 1
servers:
  files:
    tools: {{default: allow}}
    paths: {{roots: [{root}]}}
  db:
    tools: {{default: allow}}
    sql: {{arguments: [sql], dialect: postgres, deny_tables: [api_keys]}}
  web:
    tools: {{default: allow}}
    urls: {{arguments: [url], allow_hosts: ["docs.example.com"], deny_private: false}}
"""


@pytest.mark.parametrize(
    ("server", "args", "code", "rule"),
    [
        ("files", '{"path": "ROOT/a.txt"}', 0, "tools.default"),
        ("files", '{"path": "ROOT/../etc/passwd"}', 1, "paths.outside-roots"),
        ("files", '{"path": "ROOT/.mcp.json"}', 1, "paths.protected"),
        ("db", '{"sql": "SELECT id FROM orders"}', 0, "tools.default"),
        ("db", '{"sql": "SELECT * FROM api_keys"}', 1, "sql.denied-table"),
        ("db", '{"sql": "COMMIT; DROP TABLE orders"}', 1, None),
        ("web", '{"url": "https://docs.example.com/x"}', 0, "tools.default"),
        ("web", '{"url": "https://evil.example.net/"}', 1, "urls.host"),
    ],
)
def test_argument_guards_in_check(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    server: str,
    args: str,
    code: int,
    rule: str | None,
) -> None:
    """`portcullis check` applies the same argument guards as the gateway."""
    monkeypatch.setenv("PORTCULLIS_HOME", str(tmp_path / "home"))
    root = tmp_path / "project"
    root.mkdir()
    path = tmp_path / "policy.yaml"
    path.write_text(ARGS_POLICY.format(root=root))
    rc, out = check(
        path, "--server", server, "--tool", "t", "--args", args.replace("ROOT", str(root))
    )
    assert rc == code, out
    if rule is not None:
        assert out["rule"] == rule


def test_usage_errors_are_json(policy: Path) -> None:
    """A missing --tool is reported as JSON on stdout with exit 2, like every other error."""
    done = subprocess.run(
        [sys.executable, "-m", "portcullis", "check", "--policy", str(policy)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "--tool" in json.loads(done.stdout)["error"]
