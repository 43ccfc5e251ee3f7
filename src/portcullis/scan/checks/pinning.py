"""Packages that are not pinned: whatever the registry serves today runs at the next start.

``npx -y pkg``, ``uvx pkg`` and ``image:tag`` fetch the newest release on every launch, so one
compromised publish (or a hijacked tag) reaches every machine at once, with no review. An exact
version (``pkg@1.2.3``, ``pkg==1.2.3``) or an image digest (``@sha256:…``) changes only when
someone edits the config.
"""

from __future__ import annotations

from collections.abc import Iterable

from portcullis.scan.checks._util import redact_url, scrub
from portcullis.scan.model import Finding, PackageRef, Rule, Server
from portcullis.scan.packages import package_refs

__all__ = ["DOCKER_UNPINNED_IMAGE", "LATEST_TAG", "RULES", "UNPINNED_PACKAGE", "check"]

_PIN_HELP = (
    " Pin the exact version you reviewed and update it deliberately: "
    '"pkg@1.2.3" for npx/bunx/pnpm dlx, "pkg==1.2.3" for uvx/pipx run, '
    '"image@sha256:<digest>" for containers.'
)
UNPINNED_PACKAGE = Rule(
    id="unpinned-package",
    title="Package runs without a pinned version",
    severity="medium",
    checklist=("vetted-pinned-packages",),
    help="A package launched without an exact version is re-resolved at every start: a new "
    "(possibly malicious) release runs without anyone looking at it." + _PIN_HELP,
)
LATEST_TAG = Rule(
    id="latest-tag",
    title="Package or image pinned to 'latest'",
    severity="medium",
    checklist=("vetted-pinned-packages",),
    help="'latest' is not a version: it names whatever was published last, so it is the same "
    "as no pin at all, stated explicitly." + _PIN_HELP,
)
DOCKER_UNPINNED_IMAGE = Rule(
    id="docker-unpinned-image",
    title="Container image referenced by tag, not digest",
    severity="low",
    checklist=("vetted-pinned-packages",),
    help="Image tags can be moved to new content at any time; only a digest names fixed "
    "content. Resolve the tag once (`docker buildx imagetools inspect IMAGE:TAG`) and use "
    "IMAGE@sha256:<digest>." + _PIN_HELP,
)
RULES = (UNPINNED_PACKAGE, LATEST_TAG, DOCKER_UNPINNED_IMAGE)


def _pinned_spec(ref: PackageRef) -> str:
    if ref.ecosystem == "npm":
        return f"{ref.name}@<version>"
    if ref.ecosystem == "pypi":
        return f"{ref.name}==<version>"
    return f"{ref.name}@sha256:<digest>"


def _lookup(ref: PackageRef) -> str:
    return (
        f"npm view {ref.name} version"
        if ref.ecosystem == "npm"
        else (f"pip index versions {ref.name}")
    )


def _safe(text: str) -> str:
    # A git or tarball URL can carry a token in its userinfo or query.
    return scrub(redact_url(text) if "://" in text else text)


def _finding(server: Server, raw: PackageRef) -> Finding | None:
    if raw.pinned:
        return None
    ref = PackageRef(
        raw.ecosystem, _safe(raw.name), raw.version, raw.pinned, _safe(raw.spec), raw.pointer
    )
    fix = f'Replace "{ref.spec}" with "{_pinned_spec(ref)}" (the exact version you reviewed; ' + (
        f"`docker buildx imagetools inspect {ref.name}:{ref.version or 'latest'}` "
        "prints the digest)."
        if ref.ecosystem == "docker"
        else f"`{_lookup(ref)}` shows the current one)."
    )
    version = (ref.version or "").lower()
    if version == "latest" or (ref.ecosystem == "docker" and not version):
        what = "the implicit 'latest' tag" if not version else "'latest'"
        rule = LATEST_TAG if version else DOCKER_UNPINNED_IMAGE
        return Finding.of(
            rule,
            server,
            f'server "{server.name}" runs {ref.ecosystem} {ref.name} at {what}: a new publish '
            "runs unreviewed at the next start",
            fix=fix,
            pointer=ref.pointer,
            evidence=ref.spec,
            severity="medium",
        )
    if ref.ecosystem == "docker":
        return Finding.of(
            DOCKER_UNPINNED_IMAGE,
            server,
            f'server "{server.name}" runs image {ref.name} by tag {ref.version!r}, which can be '
            "moved to other content",
            fix=fix,
            pointer=ref.pointer,
            evidence=ref.spec,
        )
    how = f"the range {ref.version!r}" if ref.version else "no version"
    return Finding.of(
        UNPINNED_PACKAGE,
        server,
        f'server "{server.name}" runs {ref.ecosystem} package {ref.name} with {how}: '
        "whatever is newest runs at each start",
        fix=fix,
        pointer=ref.pointer,
        evidence=ref.spec,
    )


def check(server: Server) -> Iterable[Finding]:
    """Flag npm/PyPI packages without an exact version and images without a digest."""
    return [f for f in (_finding(server, r) for r in package_refs(server, direct=True)) if f]
