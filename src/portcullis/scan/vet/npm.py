"""npm checks over a registry document (packument), pure: no I/O here.

The registry answers ``GET <registry>/<name>`` with every version's ``package.json`` plus
``dist-tags`` and ``time``; advisories come from the bulk endpoint (see :mod:`.vetting`).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from portcullis.scan.model import SEVERITIES, PackageRef, Severity
from portcullis.scan.vet.rules import Issue, clip
from portcullis.scan.vet.versions import npm_key, npm_max_satisfying, npm_satisfies

__all__ = [
    "INSTALL_SCRIPTS",
    "NEW_RELEASE",
    "advisory_issues",
    "npm_issues",
    "npm_resolve",
    "parse_time",
]

NEW_RELEASE = timedelta(days=7)
INSTALL_SCRIPTS = ("preinstall", "install", "postinstall")
_SEVERITY: dict[str, Severity] = {
    "critical": "critical",
    "high": "high",
    "moderate": "medium",
    "medium": "medium",
    "low": "low",
    "info": "info",
}


def parse_time(value: Any) -> datetime | None:
    """An ISO 8601 registry timestamp as an aware datetime (``None`` if unusable)."""
    if not isinstance(value, str):
        return None
    try:
        stamp = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return stamp if stamp.tzinfo else None


def npm_resolve(ref: PackageRef, doc: dict[str, Any]) -> tuple[str | None, list[Issue]]:
    """The version ``npx`` would run for ``ref``, or why there is none."""
    versions = doc.get("versions") if isinstance(doc.get("versions"), dict) else {}
    assert isinstance(versions, dict)
    tags = doc.get("dist-tags") if isinstance(doc.get("dist-tags"), dict) else {}
    assert isinstance(tags, dict)
    wanted = (ref.version or "latest").strip()
    if wanted in versions:
        return wanted, []
    if wanted in tags and tags[wanted] in versions:
        return str(tags[wanted]), []
    if ref.pinned or npm_key(wanted) is not None:
        return None, [
            Issue(
                "package-not-found",
                f"{ref.name} has no version {wanted} in the registry",
                evidence=ref.spec,
                severity="medium",
                fix="Pin a version the registry actually has.",
            )
        ]
    best = npm_max_satisfying(versions, wanted)
    if best is None:
        return None, [
            Issue(
                "package-not-found",
                f"no published version of {ref.name} matches {wanted!r}",
                evidence=ref.spec,
                severity="medium",
                fix="Pin a version the registry actually has.",
            )
        ]
    return best, []


def npm_issues(ref: PackageRef, doc: dict[str, Any], version: str, now: datetime) -> list[Issue]:
    """Metadata checks for the version in use (everything but advisories)."""
    meta: dict[str, Any] = doc["versions"][version]
    tags = doc.get("dist-tags") or {}
    shown = f"{ref.name}@{version}"
    issues: list[Issue] = []

    deprecated = meta.get("deprecated")
    if isinstance(deprecated, str) and deprecated.strip():
        issues.append(
            Issue(
                "package-deprecated",
                f"{shown} is deprecated: {clip(deprecated)}",
                evidence=clip(deprecated),
            )
        )

    latest = tags.get("latest") if isinstance(tags, dict) else None
    if ref.pinned and isinstance(latest, str) and latest != version:
        mine, newest = npm_key(version), npm_key(latest)
        if mine is not None and newest is not None and mine < newest:
            issues.append(
                Issue(
                    "package-outdated",
                    f"{ref.name} is pinned to {version}; the latest is {latest}",
                    evidence=ref.spec,
                    # a patch behind is routine; a minor or major behind deserves a look
                    severity="info" if mine[:2] == newest[:2] else None,
                )
            )

    published = parse_time((doc.get("time") or {}).get(version))
    if published is not None and timedelta(0) <= now - published < NEW_RELEASE:
        issues.append(_new_release(shown, published, now))

    maintainers = meta.get("maintainers", doc.get("maintainers"))
    if isinstance(maintainers, list) and len(maintainers) == 1:
        who = maintainers[0].get("name", "") if isinstance(maintainers[0], dict) else ""
        issues.append(
            Issue(
                "package-single-maintainer",
                f"{ref.name} has a single maintainer{f' ({who})' if who else ''}",
                evidence=str(who),
            )
        )

    if not _has_repository(meta.get("repository", doc.get("repository"))):
        issues.append(Issue("package-no-repository", f"{shown} names no source repository"))

    scripts = meta.get("scripts") if isinstance(meta.get("scripts"), dict) else {}
    assert isinstance(scripts, dict)
    hooks = [f"{k}: {scripts[k]}" for k in INSTALL_SCRIPTS if isinstance(scripts.get(k), str)]
    if hooks:
        issues.append(
            Issue(
                "package-install-scripts",
                f"installing {shown} runs {', '.join(h.split(':')[0] for h in hooks)}",
                evidence=clip("; ".join(hooks)),
            )
        )
    elif meta.get("hasInstallScript") is True:
        issues.append(
            Issue(
                "package-install-scripts",
                f"installing {shown} runs an install script (native build)",
            )
        )

    dist = meta.get("dist") if isinstance(meta.get("dist"), dict) else {}
    assert isinstance(dist, dict)
    if not dist.get("attestations"):
        issues.append(
            Issue(
                "package-no-provenance", f"{shown} was published without a provenance attestation"
            )
        )
    return issues


def _new_release(shown: str, published: datetime, now: datetime) -> Issue:
    age = now - published
    days = age.days
    when = f"{days} day{'s' if days != 1 else ''}" if days else f"{age.seconds // 3600} hours"
    return Issue(
        "package-new-release",
        f"{shown} was published {when} ago ({published:%Y-%m-%d %H:%M} UTC)",
        evidence=published.isoformat(),
    )


def _has_repository(repo: Any) -> bool:
    if isinstance(repo, str):
        return bool(repo.strip())
    return isinstance(repo, dict) and bool(str(repo.get("url") or "").strip())


def advisory_issues(name: str, version: str, advisories: list[dict[str, Any]]) -> list[Issue]:
    """One ``package-vulnerable`` issue for the advisories that cover ``version``.

    The bulk endpoint may answer with advisories for any version it was sent; each is kept
    only when its ``vulnerable_versions`` range covers this one (or cannot be read).
    """
    hits = []
    for adv in advisories:
        if not isinstance(adv, dict):
            continue
        covers = npm_satisfies(version, str(adv.get("vulnerable_versions") or "*"))
        if covers is False:
            continue
        hits.append(adv)
    if not hits:
        return []
    severities = [_SEVERITY.get(str(a.get("severity", "")).lower(), "high") for a in hits]
    worst = max(severities, key=SEVERITIES.index)
    labels = [
        f"{_advisory_id(a)} ({s}): {clip(str(a.get('title') or ''), 60)}"
        for a, s in zip(hits, severities, strict=True)
    ]
    count = f"{len(hits)} known vulnerabilit{'y' if len(hits) == 1 else 'ies'}"
    return [
        Issue(
            "package-vulnerable",
            f"{name}@{version} has {count}: {'; '.join(labels)}",
            evidence=clip(", ".join(_advisory_id(a) for a in hits)),
            severity=worst,
            fix="Upgrade to a version outside the advisories' ranges and pin it.",
        )
    ]


def _advisory_id(adv: dict[str, Any]) -> str:
    url = str(adv.get("url") or "")
    tail = url.rstrip("/").rsplit("/", 1)[-1]
    return tail if tail.startswith("GHSA-") else f"advisory {adv.get('id', '?')}"
