"""PyPI checks over the JSON API's answers, pure: no I/O here.

``<base>/pypi/<name>/json`` describes the project and its latest release (including that
release's ``vulnerabilities``); ``<base>/pypi/<name>/<version>/json`` describes one release.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

from portcullis.scan.model import PackageRef
from portcullis.scan.vet.npm import NEW_RELEASE, parse_time
from portcullis.scan.vet.rules import Issue, clip
from portcullis.scan.vet.versions import pypi_key, pypi_max_satisfying

__all__ = ["normalize", "pypi_files", "pypi_issues", "pypi_resolve", "vulnerability_issues"]

_REPO_HOSTS = ("github.com", "gitlab.com", "bitbucket.org", "codeberg.org", "sr.ht", "git.")
_REPO_LABELS = {"source", "source code", "repository", "code", "github", "gitlab", "sources"}


def normalize(name: str) -> str:
    """The PEP 503 normal form of a project name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def pypi_resolve(ref: PackageRef, doc: dict[str, Any]) -> tuple[str | None, list[Issue]]:
    """The release ``uvx``/``pip`` would install for ``ref``, or why there is none."""
    releases = doc.get("releases") if isinstance(doc.get("releases"), dict) else {}
    assert isinstance(releases, dict)
    latest = str((doc.get("info") or {}).get("version") or "")
    wanted = (ref.version or "").strip()
    spec = wanted
    if wanted and wanted[0].isdigit():
        spec = f"=={wanted}"
    if not spec:
        return (latest or None), []
    if spec.startswith("==") and "*" not in spec:
        key = pypi_key(spec[2:])
        for version in releases:
            if key is not None and pypi_key(version) == key:
                return version, []
        return None, [
            Issue(
                "package-not-found",
                f"{ref.name} has no release {spec[2:]} on the index",
                evidence=ref.spec,
                severity="medium",
                fix="Pin a release the index actually has.",
            )
        ]
    best = pypi_max_satisfying(releases, spec)
    if best is None:
        return None, [
            Issue(
                "package-not-found",
                f"no release of {ref.name} matches {spec!r}",
                evidence=ref.spec,
                severity="medium",
                fix="Pin a release the index actually has.",
            )
        ]
    return best, []


def pypi_files(doc: dict[str, Any], version: str, release: dict[str, Any] | None) -> list[Any]:
    """The files of ``version``: from its own answer when there is one, else the project's."""
    if release is not None and isinstance(release.get("urls"), list):
        return list(release["urls"])
    files = (doc.get("releases") or {}).get(version)
    return list(files) if isinstance(files, list) else []


def pypi_issues(
    ref: PackageRef,
    doc: dict[str, Any],
    version: str,
    release: dict[str, Any] | None,
    now: datetime,
) -> list[Issue]:
    """Metadata checks for the release in use (everything but vulnerabilities)."""
    info = doc.get("info") if isinstance(doc.get("info"), dict) else {}
    assert isinstance(info, dict)
    shown = f"{ref.name}=={version}"
    files = [f for f in pypi_files(doc, version, release) if isinstance(f, dict)]
    issues: list[Issue] = []

    if files and all(f.get("yanked") for f in files):
        reason = next((str(f.get("yanked_reason")) for f in files if f.get("yanked_reason")), "")
        issues.append(
            Issue(
                "package-deprecated",
                f"{shown} was yanked{f': {clip(reason)}' if reason else ''}",
                evidence=clip(reason),
                severity="medium",
            )
        )
    classifiers = info.get("classifiers") if isinstance(info.get("classifiers"), list) else []
    assert isinstance(classifiers, list)
    if "Development Status :: 7 - Inactive" in classifiers:
        issues.append(
            Issue(
                "package-deprecated",
                f"{ref.name} is marked inactive by its authors",
                evidence="Development Status :: 7 - Inactive",
            )
        )

    latest = str(info.get("version") or "")
    mine, newest = pypi_key(version), pypi_key(latest)
    if ref.pinned and mine is not None and newest is not None and mine < newest:
        issues.append(
            Issue(
                "package-outdated",
                f"{ref.name} is pinned to {version}; the latest is {latest}",
                evidence=ref.spec,
                # a patch behind is routine; a minor or major behind deserves a look
                severity="info" if (mine[0], mine[1][:2]) == (newest[0], newest[1][:2]) else None,
            )
        )

    stamps = [t for f in files if (t := parse_time(f.get("upload_time_iso_8601"))) is not None]
    if stamps:
        published = min(stamps)
        age = now - published
        if timedelta(0) <= age < NEW_RELEASE:
            when = f"{age.days} days" if age.days else f"{age.seconds // 3600} hours"
            issues.append(
                Issue(
                    "package-new-release",
                    f"{shown} was published {when} ago ({published:%Y-%m-%d %H:%M} UTC)",
                    evidence=published.isoformat(),
                )
            )

    ownership = doc.get("ownership")
    roles = ownership.get("roles") if isinstance(ownership, dict) else None
    if isinstance(roles, list) and len(roles) == 1 and isinstance(roles[0], dict):
        who = str(roles[0].get("user") or "")
        issues.append(
            Issue(
                "package-single-maintainer",
                f"{ref.name} has a single owner{f' ({who})' if who else ''}",
                evidence=who,
            )
        )

    if not _has_repository(info):
        issues.append(Issue("package-no-repository", f"{ref.name} names no source repository"))

    if files and not any(f.get("packagetype") == "bdist_wheel" for f in files):
        issues.append(
            Issue(
                "package-install-scripts",
                f"{shown} has only a source distribution: installing it runs its "
                "build code (setup.py or build backend)",
                evidence=clip(", ".join(str(f.get("filename")) for f in files)),
                severity="low",
            )
        )
    return issues


def _has_repository(info: dict[str, Any]) -> bool:
    urls = info.get("project_urls") if isinstance(info.get("project_urls"), dict) else {}
    assert isinstance(urls, dict)
    candidates = [*urls.items(), ("home_page", info.get("home_page"))]
    for label, url in candidates:
        text = str(url or "").lower()
        if not text:
            continue
        if str(label).strip().lower() in _REPO_LABELS or any(h in text for h in _REPO_HOSTS):
            return True
    return False


def vulnerability_issues(name: str, version: str, vulns: list[Any]) -> list[Issue]:
    """One ``package-vulnerable`` issue for the index's (not withdrawn) vulnerabilities."""
    live = [v for v in vulns if isinstance(v, dict) and not v.get("withdrawn")]
    if not live:
        return []
    labels = []
    for v in live:
        aliases = [a for a in v.get("aliases") or [] if isinstance(a, str)]
        fixed = ", ".join(str(x) for x in v.get("fixed_in") or [])
        label = str(v.get("id") or "?")
        if aliases:
            label += f" ({', '.join(aliases[:2])})"
        labels.append(label + (f", fixed in {fixed}" if fixed else ", no fix released"))
    count = f"{len(live)} known vulnerabilit{'y' if len(live) == 1 else 'ies'}"
    return [
        Issue(
            "package-vulnerable",
            f"{name}=={version} has {count}: {'; '.join(labels)}",
            evidence=clip(", ".join(str(v.get("id")) for v in live)),
            fix="Upgrade to a release the index lists as fixed and pin it; if none is, "
            "replace the package.",
        )
    ]
