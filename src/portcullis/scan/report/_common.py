"""Helpers every report format shares: ordering, counting, escaping and the summary line.

Kept free of rich so the JSON and SARIF paths stay cheap to import.
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from portcullis.scan.baseline import NOTES_KEY, REASONS_KEY
from portcullis.scan.model import SEVERITIES, Finding, Rule, ScanResult, Severity

__all__ = [
    "SEVERITY_ORDER",
    "counts",
    "notes",
    "plural",
    "safe",
    "scope_line",
    "severity_counts",
    "sorted_findings",
    "summary_line",
    "suppression_info",
]

# Worst first: every format lists critical before info.
SEVERITY_ORDER: tuple[Severity, ...] = tuple(reversed(SEVERITIES))

# Control, format (bidi, zero-width, Unicode tags), private-use, surrogate, unassigned and line/
# paragraph separators: what a hostile config or server would use to drive or mislead a reader.
_HIDDEN = frozenset({"Cc", "Cf", "Co", "Cs", "Cn", "Zl", "Zp"})


def safe(text: object, *, newlines: bool = False) -> str:
    r"""``text`` with every invisible or control character shown as ``\uXXXX``, never obeyed.

    Mirrors ``portcullis.pins.diff._safe``. ``newlines=True`` keeps ``\n`` (for messages and
    fixes written by Portcullis itself); names, paths and evidence never keep it, so a server
    name cannot forge a line of the report.
    """
    s = str(text)
    out: list[str] = []
    for ch in s:
        if (newlines and ch == "\n") or unicodedata.category(ch) not in _HIDDEN:
            out.append(ch)
        else:
            code = ord(ch)
            out.append(f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}")
    return "".join(out)


def _sort_key(f: Finding) -> tuple[int, str, int, str, str, str]:
    return (
        SEVERITY_ORDER.index(f.severity),
        f.file or "",
        f.line if f.line is not None else 0,
        f.server or "",
        f.rule,
        f.fingerprint,
    )


def sorted_findings(findings: Iterable[Finding]) -> list[Finding]:
    """Worst first, then by file, line, server and rule: a deterministic order across runs."""
    return sorted(findings, key=_sort_key)


def severity_counts(findings: Iterable[Finding]) -> dict[Severity, int]:
    """Findings per severity, worst first, every severity present (zero when none)."""
    c = Counter(f.severity for f in findings)
    return {s: c.get(s, 0) for s in SEVERITY_ORDER}


def counts(result: ScanResult) -> dict[str, Any]:
    """The ``summary`` object of the JSON report."""
    return {
        "findings": len(result.findings),
        "severity": severity_counts(result.findings),
        "suppressed": len(result.suppressed),
        "errors": len(result.errors),
        "servers": len(result.servers),
        "files": len(result.files),
    }


def notes(result: ScanResult) -> list[str]:
    """Warnings that are not scan errors (expired or unused baseline entries)."""
    value = result.options.get(NOTES_KEY) or []
    return [str(v) for v in value]


def suppression_info(result: ScanResult, finding: Finding) -> dict[str, Any]:
    """``{"reason", "expires", "source"}`` of the suppression that hid ``finding``."""
    reasons: Mapping[str, Any] = result.options.get(REASONS_KEY) or {}
    info = reasons.get(finding.fingerprint) or {}
    return {
        "reason": str(info.get("reason") or "suppressed"),
        "expires": info.get("expires"),
        "source": info.get("source"),
    }


def options_for_report(result: ScanResult) -> dict[str, Any]:
    """The scan options without the bookkeeping keys a baseline adds (reported separately)."""
    return {k: v for k, v in result.options.items() if k not in (NOTES_KEY, REASONS_KEY)}


def rule_title(finding: Finding, rules: Mapping[str, Rule]) -> str:
    """The rule's title, falling back to the finding's own or its id."""
    rule = rules.get(finding.rule)
    return (rule.title if rule else "") or finding.title or finding.rule


def scope_line(result: ScanResult) -> str:
    """``3 config files read, 1 could not be read, 5 servers, 0.42 s``."""
    unread = sum(1 for e in result.errors if e.kind == "config")
    parts = [f"{plural(len(result.files), 'config file')} read"]
    if unread:
        parts.append(f"{unread} could not be read")
    parts.append(plural(len(result.servers), "server"))
    parts.append(f"{result.duration_s:.2f} s")
    return ", ".join(parts)


def plural(n: int, word: str) -> str:
    """``1 file``, ``2 files``: ``n`` and ``word``, with an ``s`` unless ``n`` is one."""
    return f"{n} {word}" + ("" if n == 1 else "s")


def summary_line(result: ScanResult) -> str:
    """One line: ``12 findings: 1 critical, 3 high …; 1 suppressed; 1 file could not be read``."""
    by = severity_counts(result.findings)
    parts = [f"{n} {s}" for s, n in by.items() if n]
    head = plural(len(result.findings), "finding")
    line = f"{head}: {', '.join(parts)}" if parts else head
    if result.suppressed:
        line += f"; {len(result.suppressed)} suppressed"
    if result.errors:
        unread = sum(1 for e in result.errors if e.kind == "config")
        other = len(result.errors) - unread
        if unread:
            line += f"; {plural(unread, 'file')} could not be read"
        if other:
            line += f"; {plural(other, 'other error')}"
    return line
