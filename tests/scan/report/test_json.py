"""The JSON report: the documented schema, stable order, inert text."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import jsonschema

from portcullis.scan.model import ScanResult
from portcullis.scan.report import render

from .conftest import EVIL_NAME, NOW, RULES, make_result

SCHEMA = json.loads(
    (Path(__file__).parents[3] / "docs" / "scan-report.schema.json").read_text(encoding="utf-8")
)


def _report(result: ScanResult) -> dict:
    return json.loads(render(result, "json", rules=RULES, now=NOW))


def test_validates_against_the_documented_schema() -> None:
    """Real output validates against docs/scan-report.schema.json (draft 2020-12)."""
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    jsonschema.Draft202012Validator(SCHEMA).validate(_report(make_result()))
    jsonschema.Draft202012Validator(SCHEMA).validate(_report(ScanResult()))


def test_schema_documents_every_top_level_key_in_order() -> None:
    """The schema lists exactly the keys the report writes, in the order it writes them."""
    report = _report(make_result())
    assert list(report) == list(SCHEMA["properties"]) == SCHEMA["required"]


def test_design_contract_fields() -> None:
    """The report is version 1, and every finding has the fields DESIGN.md §4 promises."""
    report = _report(make_result())
    assert report["version"] == 1
    assert report["tool"]["name"] == "portcullis"
    for f in report["findings"]:
        for key in (
            "rule",
            "severity",
            "client",
            "file",
            "line",
            "server",
            "message",
            "evidence",
            "fix",
            "fingerprint",
        ):
            assert key in f


def test_summary_scorecard_and_order() -> None:
    """Counts by severity, worst finding first, scorecard of eight items."""
    report = _report(make_result())
    assert report["summary"] == {
        "findings": 8,
        "severity": {"critical": 1, "high": 2, "medium": 1, "low": 1, "info": 3},
        "suppressed": 1,
        "errors": 1,
        "servers": 5,
        "files": 3,
    }
    severities = [f["severity"] for f in report["findings"]]
    assert severities[0] == "critical"
    assert severities[-3:] == ["info"] * 3
    assert len(report["scorecard"]) == 8
    assert report["files"][2]["servers"] == [EVIL_NAME, "web"]


def test_suppressed_carry_reason_and_bookkeeping_is_not_in_options() -> None:
    """Suppressed findings show why; notes are top-level, not buried in options."""
    report = _report(make_result())
    assert report["suppressed"][0]["reason"] == "internal mirror pins it"
    assert report["suppressed"][0]["expires"] == "2027-01-31"
    assert report["notes"] == [
        "baseline.json:9: the suppression of auto-approve expired on 2026-10-01"
    ]
    assert report["options"] == {"offline": True, "fail_on": "high"}


def test_line_is_null_not_invented() -> None:
    """A finding without a known line says null."""
    report = _report(make_result())
    poisoning = next(f for f in report["findings"] if f["rule"] == "tool-poisoning")
    assert poisoning["line"] is None


def test_output_is_ascii_and_round_trips_hostile_text() -> None:
    """Escape bytes never appear raw, yet the server name decodes back exactly."""
    text = render(make_result(), "json", rules=RULES, now=NOW)
    assert text.isascii()
    assert "\x1b" not in text
    assert EVIL_NAME in {f["server"] for f in json.loads(text)["findings"]}


def test_stable_across_renders() -> None:
    """Rendering the same result twice gives identical text."""
    assert render(make_result(), "json", rules=RULES, now=NOW) == render(
        make_result(), "json", rules=RULES, now=NOW
    )


def test_baseline_reasons_flow_into_every_report(tmp_path: Path) -> None:
    """A real baseline's reason and expiry note reach JSON, SARIF, text and Markdown."""
    from portcullis.scan.baseline import Baseline, Suppression

    result = make_result()
    result.options.clear()
    result.suppressed.clear()
    Baseline(
        path=tmp_path / "baseline.json",
        suppressions=[
            Suppression(reason="demo db only", rule="plaintext-secret", server="db"),
            Suppression(reason="old", rule="auto-approve", expires=date(2026, 1, 1), line=7),
        ],
    ).apply(result, today=date(2026, 11, 24))
    report = _report(result)
    assert [s["reason"] for s in report["suppressed"]] == ["demo db only"]
    assert report["notes"][0].startswith(f"{tmp_path / 'baseline.json'}:7: the suppression")
    sarif = json.loads(render(result, "sarif", rules=RULES))
    justified = [
        r["suppressions"][0]["justification"]
        for r in sarif["runs"][0]["results"]
        if "suppressions" in r
    ]
    assert justified == ["demo db only"]
    assert "demo db only" in render(result, "text", rules=RULES, color=False, now=NOW)
    assert "demo db only" in render(result, "markdown", rules=RULES, now=NOW)
