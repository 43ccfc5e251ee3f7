"""The scorecard: the eight-point MCP security checklist judged from one scan (pure).

Every item is ``pass``, ``fail``, ``warn`` or ``unknown`` with a one-line reason that says why,
so a verdict is never opaque:

* an item with findings fails when one is medium or worse and warns when all are low or info;
* "audit logging", "confirmation of destructive tools", "filtered sensitive data" and
  "sandboxing" hold only for servers behind Portcullis: the ``not-wrapped`` finding (info, one
  per unwrapped server) carries those items and means fail for them, whatever its severity;
* "regular review" passes when the previous scan is under 30 days old, warns when older, and is
  unknown with no history;
* an item with no findings passes unless part of the scan failed (an unreadable config, a failed
  registry look-up): then it is unknown, because a scan that could not see everything never
  looks clean. With no servers at all, server items are unknown.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from portcullis.scan.model import CHECKLIST, SEVERITIES, Checklist, Finding, ScanResult, Severity
from portcullis.scan.report._common import plural

__all__ = ["NOT_WRAPPED", "REVIEW_PERIOD", "Item", "Status", "scorecard"]

Status = Literal["pass", "fail", "warn", "unknown"]

NOT_WRAPPED = "not-wrapped"
"""The rule id of the one-per-server "not behind Portcullis" finding."""
REVIEW_PERIOD = timedelta(days=30)

# Items only the gateway can provide: a not-wrapped finding fails them.
_GATEWAY_ITEMS: frozenset[Checklist] = frozenset(
    {"audit-logging", "confirm-destructive", "filtered-sensitive-data", "sandboxing"}
)
# Which failed parts of a scan leave an item unjudged (``ScanError.kind`` → items).
_BLIND: dict[str, frozenset[Checklist]] = {
    "config": frozenset(CHECKLIST) - {"regular-review"},
    "vet": frozenset({"vetted-pinned-packages"}),
    "inspect": frozenset({"least-privilege", "confirm-destructive"}),
}


@dataclass(frozen=True)
class Item:
    """One checklist item's verdict."""

    id: Checklist
    title: str
    status: Status
    reason: str
    servers: int
    """Servers the scan saw."""
    affected: int
    """Servers with at least one (unsuppressed) finding for this item."""

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape of an entry of the report's ``scorecard``."""
        return {
            "id": self.id,
            "title": self.title,
            "status": self.status,
            "reason": self.reason,
            "servers": self.servers,
            "affected": self.affected,
        }


def scorecard(
    result: ScanResult,
    *,
    previous_run: datetime | None = None,
    now: datetime | None = None,
) -> list[Item]:
    """Judge every CHECKLIST item, in checklist order.

    ``previous_run`` is when the scan before this one ran (``history.previous_run``); ``now``
    defaults to the current time and exists for tests.
    """
    total = len(result.servers)
    blind: set[Checklist] = set()
    for error in result.errors:
        blind |= _BLIND.get(error.kind, frozenset())
    items: list[Item] = []
    for item_id, title in CHECKLIST.items():
        if item_id == "regular-review":
            status, reason = _review(previous_run, now or datetime.now(UTC))
            items.append(Item(item_id, title, status, reason, total, 0))
            continue
        found = [f for f in result.findings if item_id in f.checklist]
        affected = len({(f.file, f.server) for f in found if f.server is not None})
        status, reason = _judge(item_id, found, total, item_id in blind, result)
        items.append(Item(item_id, title, status, reason, total, affected))
    return items


def _judge(
    item: Checklist,
    found: list[Finding],
    total: int,
    blind: bool,
    result: ScanResult,
) -> tuple[Status, str]:
    if found:
        unwrapped = {(f.file, f.server) for f in found if f.rule == NOT_WRAPPED}
        others = [f for f in found if f.rule != NOT_WRAPPED]
        parts: list[str] = []
        if unwrapped and item in _GATEWAY_ITEMS:
            parts.append(f"{len(unwrapped)} of {total} servers not behind Portcullis")
        if others:
            parts.append(_describe(others, total))
        worst = max(SEVERITIES.index(f.severity) for f in others) if others else -1
        failing = (unwrapped and item in _GATEWAY_ITEMS) or worst >= SEVERITIES.index("medium")
        return ("fail" if failing else "warn"), "; ".join(parts) or _describe(found, total)
    if blind:
        return "unknown", "no findings, but part of the scan failed (see the errors)"
    if total == 0:
        settings = "" if not result.files else f" in {plural(len(result.files), 'file')}"
        return "unknown", f"no servers configured{settings}"
    if item in _GATEWAY_ITEMS:
        return "pass", f"all {plural(total, 'server')} behind Portcullis"
    return "pass", f"no findings across {plural(total, 'server')}"


def _describe(found: list[Finding], total: int) -> str:
    servers = {(f.file, f.server) for f in found if f.server is not None}
    file_level = sum(1 for f in found if f.server is None)
    worst: Severity = max((f.severity for f in found), key=SEVERITIES.index)
    text = f"{plural(len(found), 'finding')} (worst: {worst})"
    where: list[str] = []
    if servers:
        where.append(f"{len(servers)} of {plural(total, 'server')}")
    if file_level:
        where.append(plural(file_level, "client setting"))
    return f"{text} on {' and '.join(where)}" if where else text


def _review(previous: datetime | None, now: datetime) -> tuple[Status, str]:
    if previous is None:
        return "unknown", "no earlier scan recorded"
    if previous.tzinfo is None:
        previous = previous.replace(tzinfo=UTC)
    age = now - previous
    days = max(age.days, 0)
    when = "today" if days == 0 else f"{plural(days, 'day')} ago"
    if age < REVIEW_PERIOD:
        return "pass", f"previous scan {when}"
    return "warn", f"previous scan {when} (review at least every {REVIEW_PERIOD.days} days)"
