"""The finding: what every detector returns."""

from __future__ import annotations

from typing import Any, Literal

import msgspec

__all__ = ["SEVERITIES", "Finding", "Kind", "Severity"]

Kind = Literal["secret", "pii", "injection", "unicode"]
Severity = Literal["info", "low", "medium", "high", "critical"]
SEVERITIES: tuple[Severity, ...] = ("info", "low", "medium", "high", "critical")


class Finding(msgspec.Struct, frozen=True):
    """One detection: a stable rule id, its kind and severity, and where it is in the text.

    ``start``/``end`` are character offsets into the scanned string. ``evidence`` is the matched
    text, masked for secrets and PII (never the whole value).
    """

    rule: str
    kind: Kind
    severity: Severity
    start: int
    end: int
    evidence: str

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape of ``portcullis detect``."""
        return {f: getattr(self, f) for f in self.__struct_fields__}
