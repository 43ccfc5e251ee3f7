"""docs/scan.md names every rule the scanner can emit."""

from __future__ import annotations

from pathlib import Path

from portcullis.scan.checks import RULES as CHECKS
from portcullis.scan.inspect import RULES as LIVE
from portcullis.scan.vet import RULES as VET

DOC = (Path(__file__).parents[2] / "docs" / "scan.md").read_text()


def test_every_rule_is_documented():
    """Each rule id appears in docs/scan.md in backticks."""
    missing = [rule for rules in (CHECKS, VET, LIVE) for rule in rules if f"`{rule}`" not in DOC]
    assert missing == []


def test_rule_ids_are_unique_across_stages():
    """No two stages use the same rule id for different things."""
    assert not (CHECKS.keys() & VET.keys())
    assert not (CHECKS.keys() & LIVE.keys())
    assert not (VET.keys() & LIVE.keys())
