"""The SARIF 2.1.0 report (``--format sarif``) for code-scanning dashboards.

One run. Results point at the real line of the config entry (``region`` is left out when the
line is unknown: a made-up line 1 sends people to the wrong place). Files under ``base`` are
relative to ``%SRCROOT%`` so a dashboard links them into the repository; other files are
absolute ``file://`` URIs. Suppressed findings are results with an ``external`` suppression, and
every scan error is a tool execution notification with ``executionSuccessful: false``.
No URL of any web host is written: the report says nothing the reader's tools would fetch.
"""

from __future__ import annotations

import json
import ntpath
import os
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any
from urllib.parse import quote

from portcullis._version import __version__
from portcullis.scan.model import Finding, Rule, ScanError, ScanResult, Severity
from portcullis.scan.report._common import notes, sorted_findings, suppression_info

__all__ = ["LEVELS", "SECURITY_SEVERITY", "build", "render", "uri_of"]

LEVELS: dict[Severity, str] = {
    "critical": "error",
    "high": "error",
    "medium": "warning",
    "low": "note",
    "info": "note",
}
# GitHub code scanning ranks security alerts by this number (critical > 9, high 7-8.9, ...).
SECURITY_SEVERITY: dict[Severity, str] = {
    "critical": "9.5",
    "high": "8.0",
    "medium": "5.5",
    "low": "3.0",
    "info": "1.0",
}
SRCROOT = "%SRCROOT%"
FINGERPRINT_KEY = "portcullis/v1"

_WINDOWS = re.compile(r"^(?:[A-Za-z]:[\\/]|\\\\)")


def build(
    result: ScanResult, *, rules: Mapping[str, Rule], base: Path | None = None
) -> dict[str, Any]:
    """The SARIF log as a JSON-ready dict."""
    findings = sorted_findings(result.findings)
    suppressed = sorted_findings(result.suppressed)
    rule_ids = sorted({f.rule for f in [*findings, *suppressed]})
    index = {rid: i for i, rid in enumerate(rule_ids)}
    first = {f.rule: f for f in [*findings, *suppressed]}
    results = [_result(f, index, base) for f in findings]
    for f in suppressed:
        entry = _result(f, index, base)
        entry["suppressions"] = [
            {
                "kind": "external",
                "status": "accepted",
                "justification": suppression_info(result, f)["reason"],
            }
        ]
        results.append(entry)
    run: dict[str, Any] = {
        "tool": {
            "driver": {
                "name": "Portcullis",
                "semanticVersion": __version__,
                "version": __version__,
                "rules": [_rule(rid, rules.get(rid), first[rid]) for rid in rule_ids],
            }
        },
        "invocations": [_invocation(result, base)],
        "results": results,
        "columnKind": "unicodeCodePoints",
    }
    if base is not None:
        run["originalUriBaseIds"] = {SRCROOT: {"uri": _dir_uri(base)}}
    return {"version": "2.1.0", "runs": [run]}


def render(result: ScanResult, *, rules: Mapping[str, Rule], base: Path | None = None) -> str:
    """The SARIF log text (indented, ending in a newline)."""
    return json.dumps(build(result, rules=rules, base=base), indent=2, ensure_ascii=True) + "\n"


def uri_of(file: str, base: Path | None) -> tuple[str, str | None]:
    r"""``(uri, uriBaseId)`` for ``file``: relative to ``base`` when under it, else ``file://``.

    Windows paths (``C:\x``, ``\\host\share``) are recognised on any platform, so a report
    made from a Windows scan result renders the same everywhere.
    """
    if os.name == "nt":  # pragma: no cover - exercised on Windows only
        file = os.path.abspath(file)
        base = Path(os.path.abspath(base)) if base is not None else None
    if _WINDOWS.match(file):
        path = PureWindowsPath(ntpath.normpath(file))
        if base is not None and _WINDOWS.match(str(base)):
            wbase = PureWindowsPath(ntpath.normpath(str(base)))
            if path.is_relative_to(wbase):
                return _quote(path.relative_to(wbase).as_posix()), SRCROOT
        return path.as_uri(), None
    posix = PurePosixPath(os.path.abspath(file))
    if base is not None:
        root = PurePosixPath(os.path.abspath(base))
        if posix.is_relative_to(root):
            return _quote(posix.relative_to(root).as_posix()), SRCROOT
    return posix.as_uri(), None


def _quote(relative: str) -> str:
    return quote(relative, safe="/")


def _dir_uri(base: Path) -> str:
    if _WINDOWS.match(str(base)):
        uri = PureWindowsPath(ntpath.normpath(str(base))).as_uri()
    else:
        uri = PurePosixPath(os.path.abspath(base)).as_uri()
    # A base URI must end in "/" or relative references replace its last segment.
    return uri if uri.endswith("/") else uri + "/"


def _location(file: str | None, line: int | None, base: Path | None) -> dict[str, Any] | None:
    if not file:
        return None
    uri, base_id = uri_of(file, base)
    artifact: dict[str, Any] = {"uri": uri}
    if base_id:
        artifact["uriBaseId"] = base_id
    physical: dict[str, Any] = {"artifactLocation": artifact}
    if line is not None and line >= 1:
        physical["region"] = {"startLine": line}
    return {"physicalLocation": physical}


def _result(f: Finding, index: Mapping[str, int], base: Path | None) -> dict[str, Any]:
    text = f.message.rstrip()
    if f.fix:
        text += f"\n\nFix: {f.fix.strip()}"
    out: dict[str, Any] = {
        "ruleId": f.rule,
        "ruleIndex": index[f.rule],
        "level": LEVELS[f.severity],
        "message": {"text": text},
    }
    location = _location(f.file, f.line, base)
    if location is not None:
        if f.server:
            logical: dict[str, Any] = {"name": f.server, "kind": "object"}
            if f.pointer:
                logical["fullyQualifiedName"] = f.pointer
            location["logicalLocations"] = [logical]
        out["locations"] = [location]
    out["partialFingerprints"] = {FINGERPRINT_KEY: f.fingerprint}
    props: dict[str, Any] = {"severity": f.severity}
    for key in ("server", "client", "pointer", "tool"):
        value = getattr(f, key)
        if value:
            props[key] = value
    if f.evidence:
        props["evidence"] = f.evidence
    out["properties"] = props
    return out


def _rule(rule_id: str, rule: Rule | None, example: Finding) -> dict[str, Any]:
    severity = rule.severity if rule else example.severity
    title = (rule.title if rule else "") or example.title or rule_id
    help_text = (rule.help if rule else "") or example.fix or title
    checklist = list(rule.checklist if rule else example.checklist)
    return {
        "id": rule_id,
        "name": "".join(part.capitalize() for part in re.split(r"[^A-Za-z0-9]+", rule_id)),
        "shortDescription": {"text": title},
        "fullDescription": {"text": help_text},
        "help": {"text": help_text},
        "defaultConfiguration": {"level": LEVELS[severity]},
        "properties": {
            "tags": [*checklist, "security"],
            "security-severity": SECURITY_SEVERITY[severity],
        },
    }


def _invocation(result: ScanResult, base: Path | None) -> dict[str, Any]:
    invocation: dict[str, Any] = {"executionSuccessful": not result.errors}
    started = _utc(result.started)
    if started:
        invocation["startTimeUtc"] = started
    notifications = [_notification(e, base) for e in result.errors]
    notifications += [
        {"level": "warning", "message": {"text": n}, "descriptor": {"id": "baseline"}}
        for n in notes(result)
    ]
    if notifications:
        invocation["toolExecutionNotifications"] = notifications
    return invocation


def _utc(stamp: str) -> str | None:
    """``stamp`` as an RFC 3339 UTC time, or None when it is not a timestamp."""
    try:
        when = datetime.fromisoformat(stamp.replace("Z", "+00:00")) if stamp else None
    except ValueError:
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _notification(error: ScanError, base: Path | None) -> dict[str, Any]:
    text = error.message
    if error.server:
        text = f"server {error.server}: {text}"
    out: dict[str, Any] = {
        "level": "error",
        "message": {"text": text},
        "descriptor": {"id": error.kind},
    }
    location = _location(error.file, error.line, base)
    if location is not None:
        out["locations"] = [location]
    return out
