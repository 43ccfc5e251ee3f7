"""The pure npm and PyPI metadata checks, on small hand-made registry documents."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from portcullis.scan.vet.npm import advisory_issues, npm_issues, npm_resolve
from portcullis.scan.vet.pypi import pypi_issues, pypi_resolve, vulnerability_issues

from .conftest import npm_ref, pypi_ref

NOW = datetime(2026, 11, 24, tzinfo=UTC)


def npm_doc(**meta: Any) -> dict[str, Any]:
    base = {
        "name": "p",
        "version": "1.0.0",
        "repository": {"url": "git+https://x.invalid/p"},
        "dist": {"attestations": {"url": "x"}},
        "maintainers": [{"name": "a"}, {"name": "b"}],
    }
    return {
        "dist-tags": {"latest": "1.0.0", "next": "2.0.0-rc.1"},
        "time": {"1.0.0": "2026-01-01T00:00:00.000Z", "2.0.0-rc.1": "2026-11-23T00:00:00Z"},
        "versions": {"1.0.0": base | meta, "2.0.0-rc.1": base},
    }


def npm_rules(**meta: Any) -> dict[str, str]:
    return {
        i.rule: i.message for i in npm_issues(npm_ref("p", "1.0.0"), npm_doc(**meta), "1.0.0", NOW)
    }


def test_clean_npm_version_has_no_issues() -> None:
    """Repository, two maintainers, provenance, old and latest: nothing to say."""
    assert npm_rules() == {}


def test_npm_metadata_issues() -> None:
    """Deprecation, install hooks, a lone maintainer, no repository and no provenance."""
    found = npm_rules(
        deprecated="use q instead",
        scripts={"postinstall": "node x.js", "test": "jest"},
        maintainers=[{"name": "solo"}],
        repository=None,
        dist={},
    )
    assert set(found) == {
        "package-deprecated",
        "package-install-scripts",
        "package-single-maintainer",
        "package-no-repository",
        "package-no-provenance",
    }
    assert "use q instead" in found["package-deprecated"]
    assert "postinstall" in found["package-install-scripts"]
    assert "solo" in found["package-single-maintainer"]
    assert "package-install-scripts" in npm_rules(hasInstallScript=True)


def test_npm_tags_and_new_prerelease() -> None:
    """A dist-tag resolves through dist-tags; a two-day-old release is new."""
    version, problems = npm_resolve(npm_ref("p", "next", pinned=False), npm_doc())
    assert (version, problems) == ("2.0.0-rc.1", [])
    issues = npm_issues(npm_ref("p", "next", pinned=False), npm_doc(), "2.0.0-rc.1", NOW)
    assert [i.rule for i in issues] == ["package-new-release"]
    assert "1 day" in issues[0].message


def test_npm_advisory_ranges() -> None:
    """Advisories outside the version's range are dropped; unreadable ranges are kept."""
    advisories = [
        {"id": 1, "severity": "high", "vulnerable_versions": ">=2.0.0", "title": "a"},
        {"id": 2, "severity": "low", "vulnerable_versions": "???", "title": "b"},
    ]
    [issue] = advisory_issues("p", "1.0.0", advisories)
    assert issue.severity == "low" and "advisory 2" in issue.message
    assert advisory_issues("p", "1.0.0", advisories[:1]) == []


def pypi_doc(files: list[dict[str, Any]], **info: Any) -> dict[str, Any]:
    return {
        "info": {"version": "2.0", "project_urls": {"Source": "https://x.invalid/p"}} | info,
        "releases": {"1.0": files, "2.0": files},
        "ownership": {"roles": [{"role": "Owner", "user": "a"}, {"role": "Owner", "user": "b"}]},
    }


WHEEL = {
    "packagetype": "bdist_wheel",
    "filename": "p-1.0-py3-none-any.whl",
    "upload_time_iso_8601": "2025-01-01T00:00:00Z",
    "yanked": False,
}


def test_pypi_metadata_issues() -> None:
    """Yanked sdist-only release, inactive, one owner, no repository link, outdated pin."""
    sdist = {
        "packagetype": "sdist",
        "filename": "p-1.0.tar.gz",
        "yanked": True,
        "yanked_reason": "broken",
        "upload_time_iso_8601": "2025-01-01T00:00:00Z",
    }
    doc = pypi_doc(
        [sdist],
        project_urls={"Docs": "https://docs.invalid"},
        classifiers=["Development Status :: 7 - Inactive"],
    )
    doc["ownership"] = {"roles": [{"role": "Owner", "user": "solo"}]}
    issues = pypi_issues(pypi_ref("p", "1.0"), doc, "1.0", None, NOW)
    found = {i.rule: i for i in issues}
    assert set(found) == {
        "package-deprecated",
        "package-outdated",
        "package-single-maintainer",
        "package-no-repository",
        "package-install-scripts",
    }
    deprecated = [i for i in issues if i.rule == "package-deprecated"]
    assert [i.severity for i in deprecated] == ["medium", None]  # yanked, then inactive
    assert "broken" in deprecated[0].message


def test_pypi_clean_and_resolution() -> None:
    """A wheel with a source link and two owners is clean; specifiers resolve."""
    doc = pypi_doc([WHEEL])
    assert pypi_issues(pypi_ref("p", "2.0"), doc, "2.0", None, NOW) == []
    assert pypi_resolve(pypi_ref("p", "1.0.0"), doc) == ("1.0", [])
    assert pypi_resolve(pypi_ref("p"), doc) == ("2.0", [])
    assert pypi_resolve(pypi_ref("p", ">=1,<2"), doc)[0] == "1.0"
    version, problems = pypi_resolve(pypi_ref("p", "3.0"), doc)
    assert version is None and problems[0].rule == "package-not-found"


def test_pypi_withdrawn_vulnerabilities_are_ignored() -> None:
    """Withdrawn records do not count; live ones are listed with their fix."""
    vulns = [
        {"id": "PYSEC-1", "aliases": ["CVE-1"], "fixed_in": ["1.1"], "withdrawn": None},
        {"id": "PYSEC-2", "withdrawn": "2026-01-01"},
    ]
    [issue] = vulnerability_issues("p", "1.0", vulns)
    assert "PYSEC-1 (CVE-1), fixed in 1.1" in issue.message
    assert "PYSEC-2" not in issue.message
    assert vulnerability_issues("p", "1.0", vulns[1:]) == []


def test_outdated_by_a_patch_is_info() -> None:
    """A patch behind is info; a minor or more behind is the rule's low."""
    doc = npm_doc()
    doc["dist-tags"]["latest"] = "1.0.1"
    doc["versions"]["1.0.1"] = doc["versions"]["1.0.0"]
    [issue] = npm_issues(npm_ref("p", "1.0.0"), doc, "1.0.0", NOW)
    assert (issue.rule, issue.severity) == ("package-outdated", "info")
    [issue] = pypi_issues(pypi_ref("p", "1.0"), pypi_doc([WHEEL]), "1.0", None, NOW)
    assert (issue.rule, issue.severity) == ("package-outdated", None)
