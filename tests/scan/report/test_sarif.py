"""The SARIF 2.1.0 report: schema-valid, real lines, proper URIs, suppressions, errors."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from portcullis.scan.model import ScanResult
from portcullis.scan.report import render
from portcullis.scan.report.sarif import uri_of

from .conftest import BROKEN, CURSOR, PROJECT, REPO, RULES, make_result

SCHEMA = json.loads(
    (Path(__file__).parents[1] / "data" / "sarif-2.1.0-rtm.5.json").read_text(encoding="utf-8")
)


def _sarif(result: ScanResult | None = None, base: Path | None = REPO) -> dict:
    return json.loads(render(result or make_result(), "sarif", rules=RULES, base=base))


def _run(result: ScanResult | None = None, base: Path | None = REPO) -> dict:
    return _sarif(result, base)["runs"][0]


@pytest.mark.parametrize("base", [REPO, None])
def test_validates_against_sarif_schema(base: Path | None) -> None:
    """The log validates against the vendored SARIF 2.1.0 schema, with and without a base."""
    jsonschema.Draft4Validator(SCHEMA).validate(_sarif(base=base))
    jsonschema.Draft4Validator(SCHEMA).validate(_sarif(ScanResult(), base=base))


def test_start_lines_are_the_real_lines() -> None:
    """Each result's startLine is the finding's line; no region when the line is unknown."""
    lines = {}
    for r in _run()["results"]:
        physical = r["locations"][0]["physicalLocation"]
        lines[(r["ruleId"], r["properties"].get("server"))] = physical.get("region", {}).get(
            "startLine"
        )
    assert lines[("plaintext-secret", "db")] == 12
    assert lines[("fs-root-too-broad", "fs")] == 6
    assert lines[("not-wrapped", "fs")] == 3
    assert lines[("auto-approve", None)] == 14
    assert lines[("unpinned-package", "odd")] == 4
    assert lines[("unpinned-package", "web")] == 10
    poisoning = next(r for r in _run()["results"] if r["ruleId"] == "tool-poisoning")
    assert "region" not in poisoning["locations"][0]["physicalLocation"]
    assert 1 not in {v for k, v in lines.items() if k[0] != "not-wrapped"}


def test_uris_relative_to_srcroot_and_absolute_outside() -> None:
    """Files under base are %SRCROOT%-relative and percent-encoded; others file:// URIs."""
    run = _run()
    assert run["originalUriBaseIds"] == {"%SRCROOT%": {"uri": "file:///work/repo/"}}
    artifacts = {
        json.dumps(r["locations"][0]["physicalLocation"]["artifactLocation"], sort_keys=True)
        for r in run["results"]
    }
    assert json.dumps({"uri": ".mcp.json", "uriBaseId": "%SRCROOT%"}, sort_keys=True) in artifacts
    assert (
        json.dumps({"uri": "sub%20dir/mcp%231%25.json", "uriBaseId": "%SRCROOT%"}, sort_keys=True)
        in artifacts
    )
    assert json.dumps({"uri": "file:///home/dev/.cursor/mcp.json"}, sort_keys=True) in artifacts
    no_base = _run(base=None)
    assert "originalUriBaseIds" not in no_base
    uris = {
        r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] for r in no_base["results"]
    }
    assert uris == {
        PROJECT.as_uri(),
        "file:///work/repo/sub%20dir/mcp%231%25.json",
        CURSOR.as_uri(),
    }


def test_windows_paths() -> None:
    """Windows drive and UNC paths become file URIs or base-relative ones on any platform."""
    assert uri_of("C:\\Users\\me\\.cursor\\mcp.json", None) == (
        "file:///C:/Users/me/.cursor/mcp.json",
        None,
    )
    assert uri_of("C:\\src\\app\\my dir\\.mcp.json", Path("C:\\src\\app")) == (
        "my%20dir/.mcp.json",
        "%SRCROOT%",
    )
    assert uri_of("\\\\host\\share\\mcp.json", None)[0] == "file://host/share/mcp.json"


def test_rules_levels_and_security_severity() -> None:
    """Rules carry title, help, level, checklist tags and GitHub's security-severity."""
    run = _run()
    rules = run["tool"]["driver"]["rules"]
    by_id = {r["id"]: r for r in rules}
    assert set(by_id) == set(RULES)
    secret = by_id["plaintext-secret"]
    assert secret["shortDescription"]["text"] == "Plaintext secret in config"
    assert secret["help"]["text"] == RULES["plaintext-secret"].help
    assert secret["defaultConfiguration"]["level"] == "error"
    assert secret["properties"]["security-severity"] == "9.5"
    assert secret["properties"]["tags"] == ["no-production-credentials", "security"]
    assert by_id["unpinned-package"]["properties"]["security-severity"] == "5.5"
    assert by_id["not-wrapped"]["defaultConfiguration"]["level"] == "note"
    for r in run["results"]:
        assert rules[r["ruleIndex"]]["id"] == r["ruleId"]
    levels = {r["ruleId"]: r["level"] for r in run["results"]}
    assert levels["fs-root-too-broad"] == "error"
    assert levels["unpinned-package"] == "warning"
    assert levels["auto-approve"] == "note"


def test_message_fix_and_fingerprint() -> None:
    """The message includes the fix; partialFingerprints carries the stable fingerprint."""
    result = make_result()
    run = _run(result)
    first = run["results"][0]
    assert first["message"]["text"].startswith("DB_PASSWORD holds a plaintext password")
    assert "Fix: Move the secret" in first["message"]["text"]
    assert first["partialFingerprints"] == {"portcullis/v1": result.findings[0].fingerprint}


def test_suppressed_results() -> None:
    """A suppressed finding is a result with an accepted external suppression."""
    suppressed = [r for r in _run()["results"] if "suppressions" in r]
    assert len(suppressed) == 1
    assert suppressed[0]["suppressions"] == [
        {"kind": "external", "status": "accepted", "justification": "internal mirror pins it"}
    ]


def test_errors_are_execution_notifications() -> None:
    """A scan error marks the invocation unsuccessful and is listed with its location."""
    invocation = _run()["invocations"][0]
    assert invocation["executionSuccessful"] is False
    assert invocation["startTimeUtc"] == "2026-11-24T11:59:58Z"
    errors = [n for n in invocation["toolExecutionNotifications"] if n["level"] == "error"]
    assert len(errors) == 1
    location = errors[0]["locations"][0]["physicalLocation"]
    assert location["artifactLocation"]["uri"] == Path(BROKEN).as_uri()
    assert location["region"] == {"startLine": 7}
    clean = ScanResult()
    assert _run(clean)["invocations"][0] == {"executionSuccessful": True}


def test_no_web_urls() -> None:
    """The log names no web host (no informationUri, no schema URL)."""
    text = render(make_result(), "sarif", rules=RULES, base=REPO)
    assert "http://" not in text
    assert "https://" not in text
    assert "informationUri" not in text
    assert "\x1b" not in text
