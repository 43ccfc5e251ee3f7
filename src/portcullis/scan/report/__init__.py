"""Reports of a scan: text (terminal), JSON, SARIF 2.1.0 and Markdown, plus the scorecard.

Each format lives in its own module and is imported only when asked for, so ``--format json``
never pays for rich.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Literal

from portcullis.scan.model import Rule, ScanResult

__all__ = ["FORMATS", "ReportFormat", "render"]

ReportFormat = Literal["text", "json", "sarif", "markdown"]
FORMATS: tuple[ReportFormat, ...] = ("text", "json", "sarif", "markdown")


def render(
    result: ScanResult,
    fmt: ReportFormat,
    *,
    rules: Mapping[str, Rule],
    color: bool | None = None,
    width: int | None = None,
    base: Path | None = None,
    previous_run: datetime | None = None,
    now: datetime | None = None,
) -> str:
    """``result`` as a report in ``fmt``.

    ``rules`` maps rule ids to their definitions (titles, help, default severity for SARIF).
    ``color`` and ``width`` apply to text (``color=None``: only when stdout is a terminal).
    ``base`` makes SARIF locations relative to ``%SRCROOT%`` (usually the repository root).
    ``previous_run`` (from :func:`portcullis.scan.history.previous_run`, read before saving
    this run) judges the "regular review" item; ``now`` is for tests.
    """
    if fmt == "json":
        from portcullis.scan.report import jsonfmt

        return jsonfmt.render(result, rules=rules, previous_run=previous_run, now=now)
    if fmt == "sarif":
        from portcullis.scan.report import sarif

        return sarif.render(result, rules=rules, base=base)
    if fmt == "markdown":
        from portcullis.scan.report import markdown

        return markdown.render(result, rules=rules, previous_run=previous_run, now=now)
    if fmt == "text":
        from portcullis.scan.report import text

        return text.render(
            result, rules=rules, color=color, width=width, previous_run=previous_run, now=now
        )
    raise ValueError(f"unknown report format {fmt!r}; expected one of {', '.join(FORMATS)}")
