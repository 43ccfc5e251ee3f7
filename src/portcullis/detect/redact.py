"""Redaction: replace what the detectors found with ``[REDACTED:<rule-id>]``.

``redact_text`` works on a string and its findings. ``redact_value`` walks decoded JSON (dicts,
lists, strings, numbers) and returns a new value plus counts by rule id, so the audit can record
what was removed without ever seeing it. Scanning decoded values rather than the wire bytes is
deliberate (DESIGN §2): an escaped quote on the wire hides ``"password": "…"`` from patterns.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from portcullis.detect.findings import Finding
from portcullis.detect.secrets import scan_secrets

__all__ = ["marker", "redact_text", "redact_value"]

# Keys whose values are secrets by their name; the key is used as context for the value.
_SENSITIVE_KEY = re.compile(
    r"(?i)pass(?:word|wd|phrase)?|pwd|secret|token|api[_-]?key|apikey|credential|"
    r"private[_-]?key|access[_-]?key|auth"
)
_KEY_CHARS = re.compile(r"[^A-Za-z0-9_-]")
# Nothing shorter can be a secret or PII the rules know (the shortest is an e-mail "a@b.io").
_MIN_LEN = 6


def marker(rule: str) -> str:
    """The text that replaces a finding of ``rule``."""
    return f"[REDACTED:{rule}]"


def redact_text(text: str, findings: list[Finding]) -> str:
    """Replace each finding's span in ``text`` with ``[REDACTED:<rule-id>]``.

    Findings may come in any order; where two overlap, the earlier-starting one is kept.
    """
    if not findings:
        return text
    parts: list[str] = []
    pos = 0
    for f in sorted(findings, key=lambda f: (f.start, -f.end)):
        if f.start < pos:
            continue
        parts.append(text[pos : f.start])
        parts.append(marker(f.rule))
        pos = f.end
    parts.append(text[pos:])
    return "".join(parts)


def _scan_with_key(value: str, key: str | None, pii: bool) -> list[Finding]:
    if key is not None and _SENSITIVE_KEY.search(key):
        # Give the rules the context a config file would have: `"password": "<value>"`.
        prefix = f'"{_KEY_CHARS.sub("", key)}": "'
        n = len(prefix)
        out: list[Finding] = []
        for f in scan_secrets(prefix + value + '"', pii=pii):
            if f.end <= n:
                continue
            s, e = max(f.start - n, 0), min(f.end - n, len(value))
            if s < e:
                out.append(Finding(f.rule, f.kind, f.severity, s, e, f.evidence))
        return out
    if len(value) < _MIN_LEN:
        return []
    return scan_secrets(value, pii=pii)


def redact_value(value: Any, *, pii: bool = False) -> tuple[Any, dict[str, int]]:
    """Return a redacted copy of decoded JSON ``value`` and the number of findings per rule.

    Strings get markers in place of their findings; a number that is a secret (a card number
    held as an int) becomes the marker string. Dict keys are kept as they are but give context
    to their values (``{"password": "hunter2x!Q"}``). The input is never modified, and the
    result always encodes as JSON whenever the input did.
    """
    counts: Counter[str] = Counter()
    result = _walk(value, None, pii, counts)
    return result, dict(counts)


def _walk(value: Any, key: str | None, pii: bool, counts: Counter[str]) -> Any:
    if isinstance(value, str):
        found = _scan_with_key(value, key, pii)
        if not found:
            return value
        counts.update(f.rule for f in found)
        return redact_text(value, found)
    if isinstance(value, dict):
        return {
            k: _walk(v, k if isinstance(k, str) else None, pii, counts) for k, v in value.items()
        }
    if isinstance(value, list):
        return [_walk(v, key, pii, counts) for v in value]
    if isinstance(value, tuple):
        return tuple(_walk(v, key, pii, counts) for v in value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        text = repr(value) if isinstance(value, float) else str(value)
        found = _scan_with_key(text, key, pii)
        if not found:
            return value
        counts.update(f.rule for f in found)
        # A number cannot hold a marker; the whole value becomes the marker string.
        return marker(found[0].rule)
    return value
