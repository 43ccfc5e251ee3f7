r"""The JSON report (``--format json``), described by ``docs/scan-report.schema.json``.

Keys come out in a fixed order, findings worst first then by file and line, so two reports
diff cleanly. ``version`` changes only when a key is removed or changes meaning; keys may be
added within a version. The output is ASCII (``\uXXXX`` escapes): a hostile server name with
terminal escapes or bidi controls stays inert when the JSON is printed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from portcullis._version import __version__
from portcullis.scan.model import Rule, ScanResult
from portcullis.scan.report._common import (
    counts,
    notes,
    options_for_report,
    sorted_findings,
    suppression_info,
)
from portcullis.scan.report.scorecard import scorecard

__all__ = ["VERSION", "build", "render"]

VERSION = 1


def build(
    result: ScanResult,
    *,
    rules: Mapping[str, Rule],
    previous_run: datetime | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The report as a JSON-ready dict (``rules`` is accepted for symmetry; titles are inline)."""
    del rules  # every finding already carries its title and checklist items
    suppressed = []
    for finding in sorted_findings(result.suppressed):
        entry = finding.to_dict()
        info = suppression_info(result, finding)
        entry["reason"] = info["reason"]
        entry["expires"] = info["expires"]
        suppressed.append(entry)
    return {
        "version": VERSION,
        "tool": {"name": "portcullis", "version": __version__},
        "started": result.started,
        "duration_s": round(result.duration_s, 3),
        "options": options_for_report(result),
        "summary": counts(result),
        "scorecard": [i.to_dict() for i in scorecard(result, previous_run=previous_run, now=now)],
        "findings": [f.to_dict() for f in sorted_findings(result.findings)],
        "suppressed": suppressed,
        "errors": [e.to_dict() for e in result.errors],
        "notes": notes(result),
        "files": [
            {
                "path": str(f.path),
                "client": f.client,
                "scope": f.scope,
                "servers": [s.name for s in f.servers],
            }
            for f in result.files
        ],
        "inspected": list(result.inspected),
    }


def render(
    result: ScanResult,
    *,
    rules: Mapping[str, Rule],
    previous_run: datetime | None = None,
    now: datetime | None = None,
) -> str:
    """The JSON report text (indented, ASCII, ending in a newline)."""
    data = build(result, rules=rules, previous_run=previous_run, now=now)
    # default=str: options may hold Paths or other simple objects the CLI put there.
    return json.dumps(data, indent=2, ensure_ascii=True, default=str) + "\n"
