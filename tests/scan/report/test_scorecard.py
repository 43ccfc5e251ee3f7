"""The scorecard: one verdict with a reason per checklist item."""

from __future__ import annotations

from datetime import timedelta

from portcullis.scan.model import CHECKLIST, ScanError, ScanResult
from portcullis.scan.report.scorecard import Item, scorecard

from .conftest import NOW, make_result


def _by_id(result: ScanResult, **kw) -> dict[str, Item]:
    return {i.id: i for i in scorecard(result, now=NOW, **kw)}


def test_every_item_in_checklist_order() -> None:
    """Every CHECKLIST item appears once, in order, with a non-empty reason."""
    items = scorecard(make_result(), now=NOW)
    assert [i.id for i in items] == list(CHECKLIST)
    assert all(i.reason for i in items)
    assert all(i.servers == 5 for i in items)


def test_not_wrapped_fails_gateway_items_with_counts() -> None:
    """An info not-wrapped finding still fails the items only the gateway provides."""
    items = _by_id(make_result())
    for item_id in ("audit-logging", "sandboxing"):
        item = items[item_id]
        assert item.status == "fail"
        assert item.reason == "3 of 5 servers not behind Portcullis"
        assert item.affected == 3


def test_severity_decides_fail_or_warn() -> None:
    """Medium or worse fails; only low/info warns; none passes."""
    result = make_result()
    result.errors.clear()
    items = _by_id(result)
    assert items["no-production-credentials"].status == "fail"
    result.findings[:] = [f for f in result.findings if f.rule == "auto-approve"]
    items = _by_id(result)
    assert items["confirm-destructive"].status == "warn"
    assert items["least-privilege"].status == "pass"
    assert items["sandboxing"].reason == "all 5 servers behind Portcullis"


def test_errors_make_clean_items_unknown() -> None:
    """A scan that could not read a file never shows a clean item as pass."""
    result = make_result()
    result.findings.clear()
    items = _by_id(result)
    assert {i.status for k, i in items.items() if k != "regular-review"} == {"unknown"}
    result.errors[:] = [ScanError("registry unreachable", kind="vet")]
    items = _by_id(result)
    assert items["vetted-pinned-packages"].status == "unknown"
    assert items["least-privilege"].status == "pass"


def test_no_servers_is_unknown() -> None:
    """With nothing configured there is nothing to pass."""
    items = _by_id(ScanResult())
    assert items["least-privilege"].status == "unknown"


def test_regular_review() -> None:
    """Previous scan under 30 days passes, older warns, none is unknown."""
    result = make_result()
    assert _by_id(result)["regular-review"].status == "unknown"
    recent = _by_id(result, previous_run=NOW - timedelta(days=3))["regular-review"]
    assert (recent.status, recent.reason) == ("pass", "previous scan 3 days ago")
    old = _by_id(result, previous_run=NOW - timedelta(days=45))["regular-review"]
    assert old.status == "warn"
    assert "45 days ago" in old.reason
