r"""The Markdown report (``--format markdown``) for a pull-request comment or a ticket.

Data from configs and servers is made inert before it reaches a renderer: hidden characters
are escaped as ``\uXXXX``, HTML is entity-encoded, Markdown punctuation (including ``|``, which
would split a table cell, and backticks) is escaped, newlines become ``<br>``, and ``@`` is
encoded so a package scope such as ``@acme/server`` does not notify a GitHub user or team.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from datetime import datetime

from portcullis.scan.model import Finding, Rule, ScanResult
from portcullis.scan.report._common import (
    notes,
    rule_title,
    safe,
    scope_line,
    severity_counts,
    sorted_findings,
    summary_line,
    suppression_info,
)
from portcullis.scan.report.scorecard import Status, scorecard

__all__ = ["md", "render"]

_STATUS: dict[Status, str] = {
    "pass": "✅ pass",
    "fail": "❌ fail",
    "warn": "⚠️ warn",
    "unknown": "❔ unknown",
}
_MD_SPECIAL = str.maketrans(
    {
        "\\": "\\\\",
        "|": "\\|",
        "`": "&#96;",
        "*": "\\*",
        "_": "\\_",
        "[": "\\[",
        "]": "\\]",
        "~": "\\~",
        "#": "\\#",
        "@": "&#64;",
        "\n": "<br>",
    }
)


def md(value: object) -> str:
    """``value`` as inert Markdown text, safe inside a table cell."""
    text = safe(value, newlines=True)
    # HTML first: the escapes added next contain "&" and must not be encoded twice.
    return html.escape(text, quote=False).translate(_MD_SPECIAL)


def render(
    result: ScanResult,
    *,
    rules: Mapping[str, Rule],
    previous_run: datetime | None = None,
    now: datetime | None = None,
) -> str:
    """The Markdown report text."""
    out: list[str] = ["## Portcullis scan", ""]
    by = severity_counts(result.findings)
    out.append(f"**{md(summary_line(result))}**")
    out.append("")
    out.append(md(scope_line(result)) + ".")
    out.append("")
    if result.errors:
        out += ["### ⛔ Could not scan", ""]
        out.append("The scan is incomplete: what is listed here was not checked.")
        out.append("")
        for e in result.errors:
            where = ":".join(str(p) for p in (e.file, e.line) if p is not None)
            prefix = f"`{_code(where)}`: " if where else ""
            server = f"server {md(e.server)}: " if e.server else ""
            out.append(f"- {prefix}{server}{md(e.message)} ({md(e.kind)})")
        out.append("")
    out += ["### Scorecard", "", "| Checklist item | Status | Servers | Why |", "|---|---|---|---|"]
    for item in scorecard(result, previous_run=previous_run, now=now):
        servers = f"{item.affected}/{item.servers}" if item.affected else "-"
        out.append(f"| {md(item.title)} | {_STATUS[item.status]} | {servers} | {md(item.reason)} |")
    out.append("")
    if result.findings:
        counts = ", ".join(f"{n} {s}" for s, n in by.items() if n)
        out += ["### Findings", "", counts, ""]
        for (file, srv), findings in _by_server(result.findings).items():
            heading = f"server {md(srv)}" if srv is not None else "client settings"
            out.append(f"#### {heading} — `{_code(file or '(no file)')}`")
            out.append("")
            out.append("| Severity | Rule | Line | Message | Evidence | Fix |")
            out.append("|---|---|---|---|---|---|")
            out += [_row(f, rules) for f in findings]
            out.append("")
    else:
        out += ["### Findings", "", "No findings.", ""]
    if result.suppressed:
        out += [f"<details><summary>{len(result.suppressed)} suppressed</summary>", ""]
        out += ["| Severity | Rule | Server | Reason |", "|---|---|---|---|"]
        for f in sorted_findings(result.suppressed):
            reason = suppression_info(result, f)["reason"]
            server = md(f.server) if f.server else "-"
            out.append(f"| {f.severity} | {md(f.rule)} | {server} | {md(reason)} |")
        out += ["", "</details>", ""]
    warnings = notes(result)
    if warnings:
        out += ["### Warnings", ""]
        out += [f"- {md(n)}" for n in warnings]
        out.append("")
    return "\n".join(out).rstrip("\n") + "\n"


def _row(f: Finding, rules: Mapping[str, Rule]) -> str:
    line = str(f.line) if f.line is not None else "-"
    rule = f"{md(f.rule)}<br>{md(rule_title(f, rules))}"
    evidence = f"<code>{md(f.evidence)}</code>" if f.evidence else ""
    return f"| **{f.severity}** | {rule} | {line} | {md(f.message)} | {evidence} | {md(f.fix)} |"


def _code(value: str) -> str:
    """Text for inside a code span: no backticks, no hidden characters, no line breaks."""
    return safe(value).replace("`", "'")


def _by_server(findings: list[Finding]) -> dict[tuple[str | None, str | None], list[Finding]]:
    groups: dict[tuple[str | None, str | None], list[Finding]] = {}
    for f in sorted_findings(findings):
        groups.setdefault((f.file, f.server), []).append(f)
    return groups
