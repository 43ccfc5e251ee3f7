"""The Markdown report: tables that hold together and data that stays inert."""

from __future__ import annotations

from portcullis.scan.report import render
from portcullis.scan.report.markdown import md

from .conftest import NOW, RULES, make_result


def _md() -> str:
    return render(make_result(), "markdown", rules=RULES, now=NOW)


def test_escaping_of_data() -> None:
    """Pipes, backticks, HTML, mentions and control characters in data are neutralised."""
    assert md("a|b") == "a\\|b"
    assert md("`x`") == "&#96;x&#96;"
    assert md("<script>") == "&lt;script&gt;"
    assert md("@acme/team") == "&#64;acme/team"
    assert md("\x1b[31m") == "\\\\u001b\\[31m"
    assert md("line1\nline2") == "line1<br>line2"
    assert md("**bold** _it_") == "\\*\\*bold\\*\\* \\_it\\_"


def test_tables_keep_their_columns() -> None:
    """Every findings row has exactly six cells, even for the hostile server."""
    out = _md()
    rows = [line for line in out.splitlines() if line.startswith("| **")]
    assert len(rows) == 8
    for row in rows:
        cells = row.replace("\\|", "").strip("|").split("|")
        assert len(cells) == 6, row


def test_no_raw_html_or_escapes_from_data() -> None:
    """The hostile evidence shows up escaped: no raw script tag, ESC, or mention."""
    out = _md()
    assert "<script>" not in out
    assert "\x1b" not in out
    assert "@acme" not in out
    assert "&lt;script&gt;" in out


def test_sections() -> None:
    """Summary, errors first, scorecard table, per-server tables, suppressed, warnings."""
    out = _md()
    assert out.startswith("## Portcullis scan\n")
    assert "**8 findings: 1 critical" in out
    assert (
        out.index("### ⛔ Could not scan") < out.index("### Scorecard") < out.index("### Findings")
    )
    assert "| Audit logging | ❌ fail | 3/5 | 3 of 5 servers not behind Portcullis |" in out
    assert "#### server db — `/work/repo/.mcp.json`" in out
    assert "| **high** | tool-poisoning<br>Tool description carries instructions | - |" in out
    assert "<details><summary>1 suppressed</summary>" in out
    assert "### Warnings" in out
