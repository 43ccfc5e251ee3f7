"""``portcullis detect``: JSON findings and exit codes."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from portcullis.cli import detect as detect_cli
from tests.cli.test_redact import registered, run_handler
from tests.detect.test_secrets_samples import github_token


def test_findings_and_exit_1(monkeypatch) -> None:
    """A secret gives exit 1 and a masked finding in the documented shape."""
    gh = github_token()
    rc, out, _ = run_handler(detect_cli, ["detect"], f"token {gh}".encode(), monkeypatch)
    assert rc == 1
    (f,) = [f for f in json.loads(out)["findings"] if f["kind"] == "secret"]
    assert f == {
        "rule": "github-pat-classic",
        "kind": "secret",
        "severity": "critical",
        "start": 6,
        "end": 46,
        "evidence": f"{gh[:4]}…{gh[-4:]}",
    }
    assert gh not in out.decode()


def test_clean_exit_0(monkeypatch) -> None:
    """Nothing found: exit 0 and an empty list."""
    rc, out, _ = run_handler(detect_cli, ["detect"], b"hello world\n", monkeypatch)
    assert rc == 0
    assert json.loads(out) == {"findings": []}


def test_pii_flag(monkeypatch) -> None:
    """--pii adds personal data findings."""
    rc, out, _ = run_handler(detect_cli, ["detect", "--pii"], b"mail jane@acme.io", monkeypatch)
    assert rc == 1
    assert [f["kind"] for f in json.loads(out)["findings"]] == ["pii"]


def test_error_exit_2(monkeypatch) -> None:
    """A detector failure is exit 2 with an error object."""

    def boom(text: str, pii: bool) -> list[object]:
        raise RuntimeError("boom")

    monkeypatch.setattr(detect_cli, "_collect", boom)
    rc, out, _ = run_handler(detect_cli, ["detect"], b"x", monkeypatch)
    assert rc == 2
    assert "boom" in json.loads(out)["error"]


def test_includes_unicode_findings_when_available(monkeypatch) -> None:
    """Hidden characters are reported when the unicode detector is installed."""
    pytest.importorskip("portcullis.detect.unicode")
    rc, out, _ = run_handler(detect_cli, ["detect"], "a\u200bb".encode(), monkeypatch)
    found = json.loads(out)["findings"]
    kinds = {f["kind"] for f in found}
    assert rc == 1
    assert len({(f["rule"], f["start"], f["end"]) for f in found}) == len(found)
    assert "unicode" in kinds or "injection" in kinds


@pytest.mark.skipif(
    not registered("detect"), reason="detect is not in cli/main.py's module list yet"
)
def test_subprocess() -> None:
    """The real command, as a user runs it."""
    gh = github_token()
    r = subprocess.run(
        [sys.executable, "-m", "portcullis", "detect"], input=gh.encode(), capture_output=True
    )
    assert r.returncode == 1
    assert json.loads(r.stdout)["findings"][0]["rule"] == "github-pat-classic"
