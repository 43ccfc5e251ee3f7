"""The scan orchestrator: stages that fail never make a scan look clean."""

from __future__ import annotations

from pathlib import Path

import pytest

from portcullis.scan.scanner import ScanOptions, scan


def test_a_crashing_vetting_stage_is_an_error_not_a_crash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug in package vetting is a vet error (exit 2); the other findings are kept."""
    config = tmp_path / ".mcp.json"
    config.write_text('{"mcpServers": {"fs": {"command": "npx", "args": ["-y", "some-pkg"]}}}')

    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("registry said ghp_secretish")

    monkeypatch.setattr("portcullis.scan.vet.vet_packages", boom)
    result = scan(ScanOptions(paths=[config], offline=True, state_dir=tmp_path / "state"))
    (error,) = result.errors
    assert error.kind == "vet" and "RuntimeError" in error.message
    assert "ghp_" not in error.message
    assert result.findings and result.exit_code("critical") == 2


def test_a_crashed_check_exits_2_whatever_the_threshold_or_baseline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """scan-internal-error is also a scan error: --fail-on critical or a baseline cannot pass it."""
    from portcullis.scan import checks

    def broken(server: object) -> list[object]:
        raise ValueError("bug")

    monkeypatch.setitem(checks.SERVER_CHECKS, "shell", broken)
    config = tmp_path / ".mcp.json"
    config.write_text('{"mcpServers": {"t": {"command": "uvx", "args": ["mcp-server-time==1.0"]}}}')
    accepted = tmp_path / "baseline.json"
    accepted.write_text(
        '{"version": 1, "suppressions": [{"rule": "scan-internal-error", "reason": "noise"}]}'
    )
    result = scan(
        ScanOptions(paths=[config], offline=True, state_dir=tmp_path / "state", baseline=accepted)
    )
    assert any(f.rule == "scan-internal-error" for f in result.suppressed)
    assert [e.server for e in result.errors] == ["t"]
    assert result.exit_code("critical") == 2


def test_a_server_name_cannot_forge_report_lines(tmp_path: Path) -> None:
    """A name with line breaks is escaped inside messages and fixes (which keep newlines)."""
    import json

    config = tmp_path / ".mcp.json"
    name = "x\r\n\nNo findings."
    config.write_text(json.dumps({"mcpServers": {name: {"command": "npx", "args": ["pkg"]}}}))
    result = scan(ScanOptions(paths=[config], offline=True, state_dir=tmp_path / "state"))
    assert result.findings
    for finding in result.findings:
        assert "\n" not in finding.message and "\r" not in finding.message, finding.rule
        assert name not in finding.fix
    assert all(f.server == name for f in result.findings)
