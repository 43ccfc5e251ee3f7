"""``portcullis redact``: handler tests, and the real command once it is registered."""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys

import pytest

from portcullis.cli import redact as redact_cli
from tests.detect.test_secrets_samples import card, github_token


def run_handler(module, argv: list[str], stdin: bytes, monkeypatch) -> tuple[int, bytes, str]:
    """Build the command's parser, feed stdin, return (status, stdout bytes, stderr)."""
    parser = argparse.ArgumentParser()
    module.register(parser.add_subparsers())
    args = parser.parse_args(argv)
    out = io.BytesIO()
    err = io.StringIO()
    stdout = io.TextIOWrapper(out, encoding="utf-8")
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin), encoding="utf-8"))
    monkeypatch.setattr(sys, "stdout", stdout)
    monkeypatch.setattr(sys, "stderr", err)
    rc = args.handler(args)
    stdout.flush()
    return rc, out.getvalue(), err.getvalue()


def registered(command: str) -> bool:
    """Whether ``python -m portcullis COMMAND`` exists yet (main.py registers it)."""
    r = subprocess.run([sys.executable, "-m", "portcullis", command, "--help"], capture_output=True)
    return r.returncode == 0


def test_text_markers(monkeypatch) -> None:
    """Secrets in text become markers; exit 0."""
    gh = github_token()
    rc, out, _ = run_handler(redact_cli, ["redact"], f"token {gh}\n".encode(), monkeypatch)
    assert rc == 0
    assert out == b"token [REDACTED:github-pat-classic]\n"


def test_pii_flag(monkeypatch) -> None:
    """--pii also masks personal data."""
    rc, out, _ = run_handler(redact_cli, ["redact", "--pii"], b"mail jane@acme.io\n", monkeypatch)
    assert (rc, out) == (0, b"mail [REDACTED:email-address]\n")
    rc, out, _ = run_handler(redact_cli, ["redact"], b"mail jane@acme.io\n", monkeypatch)
    assert out == b"mail jane@acme.io\n"


def test_json_mode(monkeypatch) -> None:
    """--json redacts values and prints JSON; numbers that are cards become markers."""
    doc = {"password": "hunter2x!Q", "card": int(card("4")), "ok": True}
    rc, out, _ = run_handler(
        redact_cli, ["redact", "--json", "--pii"], json.dumps(doc).encode(), monkeypatch
    )
    assert rc == 0
    assert json.loads(out) == {
        "password": "[REDACTED:generic-password]",
        "card": "[REDACTED:payment-card]",
        "ok": True,
    }


def test_json_mode_bad_input(monkeypatch) -> None:
    """Bad JSON with --json is exit 2 with a message on stderr."""
    rc, out, err = run_handler(redact_cli, ["redact", "--json"], b"{not json", monkeypatch)
    assert rc == 2
    assert out == b""
    assert "not valid JSON" in err


def test_non_utf8_passes_through(monkeypatch) -> None:
    """Bytes that are not UTF-8 come out unchanged."""
    rc, out, _ = run_handler(redact_cli, ["redact"], b"caf\xe9 ok\n", monkeypatch)
    assert (rc, out) == (0, b"caf\xe9 ok\n")


@pytest.mark.skipif(
    not registered("redact"), reason="redact is not in cli/main.py's module list yet"
)
def test_subprocess() -> None:
    """The real command, as a user runs it."""
    gh = github_token()
    r = subprocess.run(
        [sys.executable, "-m", "portcullis", "redact"],
        input=f"x {gh}".encode(),
        capture_output=True,
    )
    assert r.returncode == 0
    assert r.stdout == b"x [REDACTED:github-pat-classic]"
    r = subprocess.run(
        [sys.executable, "-m", "portcullis", "redact", "--json"], input=b"[", capture_output=True
    )
    assert r.returncode == 2
    assert r.stderr
