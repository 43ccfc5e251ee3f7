"""The terminal report: readable, complete, and inert against hostile config text."""

from __future__ import annotations

import re

from portcullis.scan.model import ScanResult
from portcullis.scan.report import render

from .conftest import NOW, RULES, make_result

_SGR = re.compile(r"\x1b\[[0-9;]*m")


def _text(result: ScanResult | None = None, **kw) -> str:
    kw.setdefault("color", False)
    return render(result or make_result(), "text", rules=RULES, width=120, now=NOW, **kw)


def test_plain_output_has_no_escape_bytes() -> None:
    """color=False writes no ESC or BEL at all, and no box-drawing characters."""
    out = _text()
    assert "\x1b" not in out
    assert "\x07" not in out
    assert out.isascii()


def test_colour_output_escapes_only_its_own_styles() -> None:
    """With colour, every ESC byte starts one of rich's SGR codes; data escapes are shown."""
    out = _text(color=True)
    assert "\x1b[" in out
    assert "\x1b" not in _SGR.sub("", out)
    assert "\x1b]0;pwned" not in out
    assert "\\u001b]0;pwned\\u0007" in _SGR.sub("", out)


def test_markup_in_data_is_printed_literally() -> None:
    """A [bold] or [red] in a server name or evidence is text, not style."""
    out = _SGR.sub("", _text(color=True))
    assert "[bold]x[/bold]" in out
    assert "[red]boom[/red]" in out
    assert "\\u202e" in out


def test_sections_and_summary() -> None:
    """Header, scorecard, grouped findings, suppressed, warnings, errors, one-line summary."""
    out = _text()
    assert out.startswith(
        "Portcullis scan: 3 config files read, 1 could not be read, 5 servers, 0.42 s"
    )
    assert "Scorecard" in out
    assert re.search(r"Audit logging\s+\|\s+FAIL\s+\|\s+3/5\s+\|\s+3 of 5 servers not behind", out)
    assert re.search(r"Regular review\s+\|\s+UNKNOWN", out)
    assert "/work/repo/.mcp.json:12" in out
    assert "evidence: hunt****" in out
    assert "fix: Move the secret" in out
    assert "Suppressed: 1 finding" in out
    assert "internal mirror pins it (until 2027-01-31)" in out
    assert "expired on 2026-10-01" in out
    assert "Could not scan (1)" in out
    assert "/home/dev/.codeium/windsurf/mcp_config.json:7: invalid JSON" in out
    last = out.rstrip("\n").splitlines()[-1]
    assert last == (
        "8 findings: 1 critical, 2 high, 1 medium, 1 low, 3 info; 1 suppressed; "
        "1 file could not be read"
    )


def test_grouped_by_file_then_server_worst_first() -> None:
    """The file and server holding the worst finding come first; no line shows as 'file' only."""
    out = _text()
    assert out.index("/work/repo/.mcp.json  (claude-code, project)") < out.index(
        "/home/dev/.cursor/mcp.json  (cursor, user)"
    )
    assert out.index("server db") < out.index("server fs")
    assert "at /home/dev/.cursor/mcp.json  tool read_file" in out


def test_no_trailing_blanks_and_width_respected() -> None:
    """Lines are trimmed and fit the given width."""
    out = _text()
    assert all(line == line.rstrip() for line in out.splitlines())
    assert max(len(line) for line in out.splitlines()) <= 120


def test_clean_scan() -> None:
    """A clean, empty scan says so and still shows the scorecard."""
    out = _text(ScanResult())
    assert "No findings." in out
    assert "Scorecard" in out
    assert "Could not scan" not in out
    assert out.rstrip().endswith("0 findings")
