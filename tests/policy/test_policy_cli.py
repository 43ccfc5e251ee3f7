"""`portcullis policy validate` and `portcullis policy schema`, and the JSON Schema itself."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from portcullis.cli import policy as policy_cli
from portcullis.policy.schema import SCHEMA_DIALECT, policy_schema

DESIGN_EXAMPLE = Path(__file__).parent / "data" / "design_example.yaml"


def portcullis(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PORTCULLIS_HOME": str(home)}
    env.pop("PORTCULLIS_POLICY", None)
    return subprocess.run(
        [sys.executable, "-m", "portcullis", "policy", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def test_validate_ok(tmp_path):
    """The design example validates: exit 0, `ok: F (N servers)`, nothing left unenforced."""
    result = portcullis("validate", str(DESIGN_EXAMPLE), home=tmp_path / "state")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"ok: {DESIGN_EXAMPLE} (3 servers)\n"
    assert "not enforced" not in result.stderr


def test_validate_ok_without_warning(write_policy, tmp_path):
    """A file asking only for what this version enforces validates with an empty stderr."""
    path = write_policy(
        "version: 1\ndefaults: {redact: [], injection: 'off', pin: false}\n"
        "servers:\n  a: {tools: {default: allow}}\n"
    )
    result = portcullis("validate", str(path), home=tmp_path / "state")
    assert (result.returncode, result.stdout, result.stderr) == (0, f"ok: {path} (1 server)\n", "")


def test_validate_says_which_servers_observe_and_which_relaxations_do_nothing(
    write_policy, tmp_path
):
    """`policy validate` warns about observe mode, and about relaxations under mode enforce."""
    path = write_policy(
        "version: 1\ndefaults: {tools: {default: allow}}\nservers:\n"
        "  watched: {mode: observe, observe: {approvals: relax}}\n"
        "  strict: {observe: {pins: relax}}\n"
    )
    result = portcullis("validate", str(path), home=tmp_path / "state")
    assert result.returncode == 0, result.stderr
    assert 'observe mode for server "watched"' in result.stderr
    assert "NOT enforced (relaxed: approvals; kept: redaction, pins)" in result.stderr
    assert 'server "strict": observe relaxes pins, but its mode is enforce' in result.stderr


def test_validate_invalid_exits_2_with_the_location(write_policy, tmp_path):
    """An invalid file exits 2 with `file:line: key: reason` on stderr and nothing on stdout."""
    path = write_policy("version: 1\nservers:\n  files:\n    tools: {default: alow}\n")
    result = portcullis("validate", str(path), home=tmp_path / "state")
    assert result.returncode == 2
    assert result.stdout == ""
    assert f"{path}:4: servers.files.tools.default: Input should be" in result.stderr


def test_validate_missing_file_exits_2(tmp_path):
    """A file that does not exist exits 2."""
    result = portcullis("validate", str(tmp_path / "nope.yaml"), home=tmp_path / "state")
    assert result.returncode == 2
    assert "cannot read the policy file" in result.stderr


def test_validate_writes_no_state(tmp_path):
    """Validation neither reads nor writes the compiled-policy cache."""
    portcullis("validate", str(DESIGN_EXAMPLE), home=tmp_path / "state")
    assert not (tmp_path / "state").exists()


def test_schema_prints_json_schema(tmp_path):
    """`policy schema` prints the JSON Schema as JSON."""
    result = portcullis("schema", home=tmp_path / "state")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == policy_schema()


def test_policy_needs_a_subcommand(tmp_path):
    """`portcullis policy` alone is a usage error."""
    result = portcullis(home=tmp_path / "state")
    assert result.returncode == 2


def test_handlers_in_process(capsys):
    """The registered handlers work through argparse without the rest of the CLI."""
    parser = argparse.ArgumentParser(prog="portcullis")
    policy_cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["policy", "validate", str(DESIGN_EXAMPLE)])
    assert args.handler(args) == 0
    assert capsys.readouterr().out == f"ok: {DESIGN_EXAMPLE} (3 servers)\n"
    args = parser.parse_args(["policy", "schema"])
    assert args.handler(args) == 0
    assert json.loads(capsys.readouterr().out)["title"] == "Portcullis policy"


# ---- the schema ------------------------------------------------------------------------------


def test_schema_describes_the_top_level():
    """The schema is draft 2020-12, forbids unknown keys and requires version."""
    schema = policy_schema()
    assert schema["$schema"] == SCHEMA_DIALECT
    assert schema["additionalProperties"] is False
    assert schema["required"] == ["version"]
    assert set(schema["properties"]) == {
        "version",
        "defaults",
        "servers",
        "audit",
        "approvals",
        "serve",
    }


def test_schema_has_no_null_arms():
    """Optional blocks are not `null`-able in the schema, matching the loader."""
    assert '"type": "null"' not in json.dumps(policy_schema())


def test_schema_accepts_the_design_example_and_rejects_typos():
    """An editor validating with the schema accepts the example and flags a typo'd key."""
    jsonschema = pytest.importorskip("jsonschema")
    yaml = pytest.importorskip("yaml")
    validator = jsonschema.Draft202012Validator(policy_schema())
    document = yaml.safe_load(DESIGN_EXAMPLE.read_text())
    assert list(validator.iter_errors(document)) == []
    document["servers"]["files"]["tols"] = {"default": "deny"}
    document["servers"]["bad__name"] = {"tools": {"default": "allow"}}
    messages = [e.message for e in validator.iter_errors(document)]
    assert any("tols" in m for m in messages)
    assert any("bad__name" in m for m in messages)
