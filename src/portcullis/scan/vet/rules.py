"""Every rule package vetting can report, with its default severity and checklist item."""

from __future__ import annotations

from dataclasses import dataclass

from portcullis.scan.model import Checklist, Rule, Severity

__all__ = ["RULES", "Issue", "clip"]

_PINNED: tuple[Checklist, ...] = ("vetted-pinned-packages",)
_REVIEW: tuple[Checklist, ...] = ("vetted-pinned-packages", "regular-review")

RULES: dict[str, Rule] = {
    r.id: r
    for r in (
        Rule(
            "package-not-found",
            "Package not found in the registry",
            "high",
            _PINNED,
            "The registry has no package (or no such version) by this name: a typo, or a name "
            "anyone could register tomorrow and have your client run. Check the spelling against "
            "the project's own install instructions and pin an exact, existing version.",
        ),
        Rule(
            "package-vulnerable",
            "Package version has known vulnerabilities",
            "high",
            _REVIEW,
            "The registry reports advisories for the version this server runs. Upgrade to a fixed "
            "version and pin it.",
        ),
        Rule(
            "package-vulnerabilities-unchecked",
            "Known vulnerabilities could not be checked",
            "info",
            _REVIEW,
            "The configured registry does not publish advisories for this package version, so "
            "known vulnerabilities were not checked. Check the version with another advisory "
            "source (OSV, the vendor's advisories).",
        ),
        Rule(
            "package-deprecated",
            "Package version is deprecated or yanked",
            "low",
            _REVIEW,
            "The maintainers deprecated or yanked this version (or marked the project inactive). "
            "Move to a supported version or a maintained alternative.",
        ),
        Rule(
            "package-outdated",
            "Pinned version is not the newest",
            "low",
            _REVIEW,
            "The pinned version is behind the registry's latest release. Review the changes and "
            "move the pin forward deliberately.",
        ),
        Rule(
            "package-new-release",
            "Version in use was published days ago",
            "medium",
            _PINNED,
            "The version this server runs was published less than a week ago. Malicious releases "
            "are usually caught and pulled within days: pin a version that has been public for a "
            "while, or review this one first.",
        ),
        Rule(
            "package-single-maintainer",
            "Package has a single maintainer",
            "info",
            _REVIEW,
            "One account can publish new versions. A single compromised account is then enough "
            "to ship malware: pin an exact version and review upgrades.",
        ),
        Rule(
            "package-no-repository",
            "Package links no source repository",
            "low",
            _REVIEW,
            "The package metadata names no source repository, so the published code cannot be "
            "compared with reviewed source. Prefer packages that link their repository.",
        ),
        Rule(
            "package-install-scripts",
            "Package runs code at install time",
            "medium",
            _PINNED,
            "Installing this version runs package code (npm preinstall/install/postinstall "
            "scripts, or a source-only Python release's build). Review the script, or pin a "
            "version without one.",
        ),
        Rule(
            "package-no-provenance",
            "Package version has no provenance attestation",
            "info",
            _PINNED,
            "The registry holds no build provenance for this version, so it cannot be tied to a "
            "source commit and CI run. Prefer versions published with provenance.",
        ),
        Rule(
            "package-typosquat",
            "Package name looks like a well-known MCP server",
            "high",
            _PINNED,
            "The name is one or two characters, a look-alike character or a scope away from a "
            "well-known MCP server package: the classic typosquat. Use the exact name from the "
            "official documentation.",
        ),
        Rule(
            "package-known-malicious",
            "Package is known to be malicious",
            "critical",
            _PINNED,
            "This package (or version) is on the list of known-malicious MCP packages. Remove "
            "the server, rotate every credential it could see and review what it sent.",
        ),
        Rule(
            "package-integrity-mismatch",
            "Downloaded package does not match the registry digest",
            "high",
            _PINNED,
            "The archive downloaded for the deep scan does not match the digest the registry "
            "publishes: a tampered mirror, a proxy rewriting content or a corrupt download.",
        ),
        Rule(
            "package-unsafe-archive",
            "Package archive tries to write outside its directory",
            "high",
            _PINNED,
            "The package archive holds entries that escape the extraction directory (absolute "
            "paths, '..', links out, devices) or is a decompression bomb. Legitimate packages "
            "never do; treat it as hostile.",
        ),
        Rule(
            "package-dangerous-code",
            "Package code does something dangerous",
            "high",
            _PINNED,
            "The package's code reads credentials (SSH keys, cloud credentials, browser stores), "
            "sends the environment over the network, runs shell commands fetched from the "
            "network or evaluates obfuscated code. Review the quoted line before running it.",
        ),
    )
}


@dataclass(frozen=True)
class Issue:
    """What a pure check found about one package, before it is tied to a server."""

    rule: str
    message: str
    evidence: str = ""
    severity: Severity | None = None
    """Overrides the rule's default (an advisory's own severity, a milder variant)."""
    fix: str | None = None


def clip(text: str, limit: int = 120) -> str:
    """``text`` on one line, cut to ``limit`` characters with an ellipsis."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
