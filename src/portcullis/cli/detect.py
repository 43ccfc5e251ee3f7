"""``portcullis detect``: stdin → JSON findings (secrets, PII, injection, hidden Unicode)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

__all__ = ["register"]


def register(sub: Any) -> None:
    """Add the ``detect`` command."""
    p = sub.add_parser(
        "detect",
        help="report secrets, injections and hidden characters in stdin as JSON",
        description='Read stdin and print {"findings": [...]} as JSON; evidence is masked. '
        "Exit 0 when nothing was found, 1 when something was, 2 on error.",
    )
    p.add_argument("--pii", action="store_true", help="also report personal data")
    p.set_defaults(handler=_detect)


def _detect(args: argparse.Namespace) -> int:
    import json

    try:
        text = sys.stdin.buffer.read().decode("utf-8", "surrogateescape")
        findings = _collect(text, args.pii)
    except Exception as exc:  # any failure is "the scan failed", exit 2
        sys.stdout.write(json.dumps({"error": f"{type(exc).__name__}: {exc}"}) + "\n")
        return 2
    # scan_injection may report the hidden characters scan_unicode also reports: keep one.
    findings = list({(f.rule, f.start, f.end): f for f in findings}.values())
    findings.sort(key=lambda f: (f.start, f.end, f.rule))
    sys.stdout.write(json.dumps({"findings": [f.to_dict() for f in findings]}) + "\n")
    return 1 if findings else 0


def _collect(text: str, pii: bool) -> list[Any]:
    from portcullis.detect.secrets import scan_secrets

    findings: list[Any] = list(scan_secrets(text, pii=pii))
    # The injection and Unicode detectors are optional companions: use them when installed.
    try:
        from portcullis.detect.injection import scan_injection  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        pass
    else:
        findings.extend(scan_injection(text, where="text"))
    try:
        from portcullis.detect.unicode import scan_unicode  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        pass
    else:
        findings.extend(scan_unicode(text))
    return findings
