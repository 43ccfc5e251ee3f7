"""The public surface of package vetting: names, rules and their metadata."""

from __future__ import annotations

import inspect

import portcullis.scan.vet as vet
from portcullis.scan.model import CHECKLIST, SEVERITIES

EXPECTED = {
    "package-not-found": "high",
    "package-vulnerable": "high",
    "package-vulnerabilities-unchecked": "info",
    "package-deprecated": "low",
    "package-outdated": "low",
    "package-new-release": "medium",
    "package-single-maintainer": "info",
    "package-no-repository": "low",
    "package-install-scripts": "medium",
    "package-no-provenance": "info",
    "package-typosquat": "high",
    "package-known-malicious": "critical",
    "package-integrity-mismatch": "high",
    "package-unsafe-archive": "high",
    "package-dangerous-code": "high",
}


def test_public_names() -> None:
    """The package exports exactly vet_packages and RULES."""
    assert sorted(vet.__all__) == ["RULES", "vet_packages"]
    params = inspect.signature(vet.vet_packages).parameters
    assert list(params) == ["refs", "offline", "deep", "cache_dir", "client", "now"]


def test_rule_table() -> None:
    """Every rule has its id as key, a known severity, checklist items and help text."""
    assert {k: r.severity for k, r in vet.RULES.items()} == EXPECTED
    for key, rule in vet.RULES.items():
        assert rule.id == key and rule.severity in SEVERITIES
        assert rule.checklist and set(rule.checklist) <= set(CHECKLIST)
        assert rule.title and len(rule.help) > 40


def test_import_is_light() -> None:
    """Importing vetting loads no HTTP client: offline scans never pay for one."""
    import subprocess
    import sys

    code = "import sys, portcullis.scan.vet; print('httpx2' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
