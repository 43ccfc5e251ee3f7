"""The orchestration: resolve registries, look each package up once, run the checks.

Pure checks live in :mod:`.npm`, :mod:`.pypi`, :mod:`.typosquat` and :mod:`.deep`; this
module does the I/O around them and turns what they find into findings tied to servers.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urljoin

from portcullis.scan.model import SEVERITIES, Finding, PackageRef, ScanError, Server
from portcullis.scan.vet.archive import (
    ArchiveError,
    IntegrityError,
    UnsafeArchive,
    extract_archive,
    verify_integrity,
)
from portcullis.scan.vet.deep import Hit, scan_tree
from portcullis.scan.vet.npm import INSTALL_SCRIPTS, advisory_issues, npm_issues, npm_resolve
from portcullis.scan.vet.pypi import (
    normalize,
    pypi_files,
    pypi_issues,
    pypi_resolve,
    vulnerability_issues,
)
from portcullis.scan.vet.registries import (
    Answer,
    Fetcher,
    LookupFailed,
    Registry,
    RegistryUnknown,
    npm_registry,
    pypi_registry,
)
from portcullis.scan.vet.rules import RULES, Issue, clip
from portcullis.scan.vet.typosquat import malicious_issue, typosquat_issue

if TYPE_CHECKING:
    import httpx2

__all__ = ["vet_packages"]

Pair = tuple[Server, PackageRef]
_WORKERS = 8


@dataclass
class _Package:
    """One package name on one registry, shared by every server that uses it."""

    registry: Registry
    name: str
    uses: list[int] = field(default_factory=list)
    """Indexes of the (server, reference) pairs that use it."""
    doc: dict[str, Any] | None = None
    doc_url: str = ""


@dataclass
class _Run:
    pairs: list[Pair]
    fetcher: Fetcher
    offline: bool
    now: datetime
    issues: dict[tuple[int, str], list[Issue]] = field(default_factory=dict)
    errors: list[ScanError] = field(default_factory=list)
    resolved: dict[int, str] = field(default_factory=dict)
    """Version in use per pair index."""

    def add(self, index: int, issue: Issue | None) -> None:
        if issue is not None:
            self.issues.setdefault((index, issue.rule), []).append(issue)

    def error(self, uses: Sequence[int], message: str) -> None:
        for index in uses:
            server = self.pairs[index][0]
            err = ScanError(
                message, file=str(server.file), line=server.line, server=server.name, kind="vet"
            )
            if err not in self.errors:
                self.errors.append(err)


def vet_packages(
    refs: Sequence[tuple[Server, PackageRef]],
    *,
    offline: bool,
    deep: bool,
    cache_dir: Path,
    client: httpx2.Client | None = None,
    now: datetime | None = None,
) -> tuple[list[Finding], list[ScanError]]:
    """Vet the npm and PyPI packages servers run; Docker images are left to other checks.

    Name checks (typosquats, known malware) always run. Registry checks run online, or
    offline from answers cached in ``cache_dir`` less than a day ago; offline, nothing
    touches the network. ``deep`` downloads each package version once, checks it against the
    registry's digest, unpacks it safely and scans its code. A look-up that fails is a
    ``ScanError`` for every server that needed it, so an incomplete scan never looks clean.
    """
    now = now or datetime.now(UTC)
    pairs = [(s, r) for s, r in refs if r.ecosystem in ("npm", "pypi")]
    if not pairs:
        return [], []
    run = _Run(pairs, Fetcher(client, cache_dir, offline=offline, now=now), offline, now)
    try:
        for i, (_, ref) in enumerate(pairs):
            run.add(i, typosquat_issue(ref))
        packages = _group(run, cache_dir)
        for pkg, answer in zip(packages.values(), _fetch_docs(run, packages), strict=True):
            _look_up(run, pkg, answer)
        _advisories(run, packages)
        for i, (_, ref) in enumerate(pairs):
            run.add(i, malicious_issue(ref, run.resolved.get(i)))
        if deep and not offline:
            for pkg in packages.values():
                _deep(run, pkg)
    finally:
        run.fetcher.close()
    return _findings(run), run.errors


def _group(run: _Run, cache_dir: Path) -> dict[tuple[str, str], _Package]:
    """Registries resolved per package; one entry per registry and name (deduplicated)."""
    env = os.environ
    try:
        home = Path.home()
    except RuntimeError:  # no HOME and no passwd entry: there is no user config to read
        home = Path(os.devnull)
    packages: dict[tuple[str, str], _Package] = {}
    memo: dict[tuple[str, str | None], Registry | str] = {}
    for index, (_, ref) in enumerate(run.pairs):
        scope = ref.name.split("/")[0] if ref.name.startswith("@") else None
        key = (ref.ecosystem, scope)
        if key not in memo:
            try:
                if ref.ecosystem == "npm":
                    memo[key] = npm_registry(
                        ref.name,
                        env=env,
                        home=home,
                        cache_dir=cache_dir,
                        now=run.now,
                        run=not run.offline,
                    )
                else:
                    memo[key] = pypi_registry(env=env, home=home)
            except RegistryUnknown as exc:
                memo[key] = str(exc)
        registry = memo[key]
        if isinstance(registry, str):
            if not run.offline:  # offline, an unknown registry just means no cache to read
                run.error([index], registry)
            continue
        # extras ("mcp[cli]") select dependencies, not another project
        name = normalize(re.sub(r"\[.*\]$", "", ref.name)) if ref.ecosystem == "pypi" else ref.name
        pkg = packages.setdefault((registry.url, name), _Package(registry, name))
        pkg.uses.append(index)
    return packages


def _doc_url(pkg: _Package) -> str:
    if pkg.registry.ecosystem == "npm":
        return pkg.registry.url + quote(pkg.name, safe="@")
    return f"{pkg.registry.url}pypi/{quote(pkg.name)}/json"


def _fetch_docs(
    run: _Run, packages: dict[tuple[str, str], _Package]
) -> list[Answer | LookupFailed | None]:
    """Every package document, fetched side by side (registries answer in parallel)."""

    def fetch(pkg: _Package) -> Answer | LookupFailed | None:
        try:
            return run.fetcher.get_json(_doc_url(pkg), pkg.registry)
        except LookupFailed as exc:
            return exc

    pkgs = list(packages.values())
    if len(pkgs) < 2:
        return [fetch(p) for p in pkgs]
    with ThreadPoolExecutor(max_workers=min(_WORKERS, len(pkgs))) as pool:
        return list(pool.map(fetch, pkgs))


def _get(run: _Run, pkg: _Package, url: str, uses: Sequence[int]) -> Answer | None:
    try:
        return run.fetcher.get_json(url, pkg.registry)
    except LookupFailed as exc:
        run.error(uses, f"{pkg.name}: {exc}")
        return None


def _look_up(run: _Run, pkg: _Package, answer: Answer | LookupFailed | None) -> None:
    """Run the metadata checks on the package document for every use of it."""
    if isinstance(answer, LookupFailed):
        run.error(pkg.uses, f"{pkg.name}: {answer}")
        return
    if answer is None:
        return  # offline without a cached answer
    if answer.status == 200 and not isinstance(answer.data, dict):
        run.error(pkg.uses, _malformed(pkg, "is not a JSON object"))
        return
    if answer.status == 404 or not isinstance(answer.data, dict):
        where = f"on {pkg.registry.tool} at {pkg.registry.shown}"
        for i in pkg.uses:
            ref = run.pairs[i][1]
            run.add(
                i,
                Issue(
                    "package-not-found",
                    f"no package named {ref.name} exists {where}",
                    evidence=ref.spec,
                ),
            )
        return
    pkg.doc_url, pkg.doc = answer.url, answer.data
    for i in pkg.uses:
        ref = run.pairs[i][1]
        try:
            if ref.ecosystem == "npm":
                version, problems = npm_resolve(ref, pkg.doc)
                found = npm_issues(ref, pkg.doc, version, run.now) if version else []
            else:
                version, problems = pypi_resolve(ref, pkg.doc)
                found = pypi_issues(ref, pkg.doc, version, None, run.now) if version else []
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            # a proxy or mirror answering in another shape must not crash the scan
            run.error([i], _malformed(pkg, f"has an unexpected shape ({type(exc).__name__})"))
            continue
        for issue in problems:
            run.add(i, issue)
        if version is None:
            continue
        run.resolved[i] = version
        for issue in found:
            if not ref.pinned and issue.rule == "package-new-release":
                issue = replace(
                    issue, message=f"{issue.message} (unpinned: what it resolves to today)"
                )
            run.add(i, issue)


def _malformed(pkg: _Package, what: str) -> str:
    return (
        f"{pkg.name}: the answer of {pkg.registry.tool} at {pkg.registry.shown} {what}; "
        "rerun with --offline to skip look-ups"
    )


def _advisories(run: _Run, packages: dict[tuple[str, str], _Package]) -> None:
    """Known vulnerabilities: npm's bulk endpoint (one request per registry), PyPI per release."""
    by_registry: dict[str, list[_Package]] = {}
    for pkg in packages.values():
        if pkg.doc is not None:
            by_registry.setdefault(pkg.registry.url, []).append(pkg)
    for group in by_registry.values():
        if group[0].registry.ecosystem == "npm":
            _npm_advisories(run, group)
        else:
            for pkg in group:
                _pypi_vulnerabilities(run, pkg)


def _versions_in_use(run: _Run, pkg: _Package) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for i in pkg.uses:
        if i in run.resolved:
            out.setdefault(run.resolved[i], []).append(i)
    return out


def _npm_advisories(run: _Run, group: list[_Package]) -> None:
    registry = group[0].registry
    in_use = {pkg.name: _versions_in_use(run, pkg) for pkg in group}
    body = {name: sorted(versions) for name, versions in sorted(in_use.items()) if versions}
    if not body:
        return
    users = [i for versions in in_use.values() for uses in versions.values() for i in uses]
    url = registry.url + "-/npm/v1/security/advisories/bulk"
    try:
        answer = run.fetcher.post_json(url, body, registry)
    except LookupFailed as exc:
        run.error(users, f"security advisories: {exc}")
        return
    if answer is None:
        return  # offline without a cached answer
    if answer.status != 200 or not isinstance(answer.data, dict):
        why = (
            f"{registry.tool} at {registry.shown} offers no security advisories "
            f"(HTTP {answer.status}), so known vulnerabilities were not checked"
        )
        for i in users:
            run.add(i, Issue("package-vulnerabilities-unchecked", why))
        return
    for name, versions in in_use.items():
        advisories = answer.data.get(name)
        for version, uses in versions.items():
            for issue in advisory_issues(name, version, list(advisories or [])):
                for i in uses:
                    run.add(i, issue)


def _pypi_vulnerabilities(run: _Run, pkg: _Package) -> None:
    assert pkg.doc is not None
    info = pkg.doc.get("info")
    latest = str(info.get("version") or "") if isinstance(info, dict) else ""
    for version, uses in _versions_in_use(run, pkg).items():
        vulns: Any = None
        if version == latest:
            vulns = pkg.doc.get("vulnerabilities")
        else:
            url = f"{pkg.registry.url}pypi/{quote(pkg.name)}/{quote(version)}/json"
            answer = _get(run, pkg, url, uses)
            if answer is None:
                continue  # failed (already an error) or offline without cache
            if answer.status == 200 and isinstance(answer.data, dict):
                vulns = answer.data.get("vulnerabilities")
        if not isinstance(vulns, list):
            why = (
                f"{pkg.registry.tool} at {pkg.registry.shown} does not say which "
                f"vulnerabilities affect {pkg.name}=={version}, so they were not checked"
            )
            for i in uses:
                run.add(i, Issue("package-vulnerabilities-unchecked", why))
            continue
        for issue in vulnerability_issues(pkg.name, version, vulns):
            for i in uses:
                run.add(i, issue)


def _archive_of(pkg: _Package, version: str) -> tuple[str, dict[str, str], dict[str, str]]:
    """Download URL, digests and (npm) install scripts for one version."""
    assert pkg.doc is not None
    if pkg.registry.ecosystem == "npm":
        meta = pkg.doc["versions"][version]
        dist = meta.get("dist") or {}
        scripts = meta.get("scripts") if isinstance(meta.get("scripts"), dict) else {}
        hooks = {k: str(v) for k, v in (scripts or {}).items() if k in INSTALL_SCRIPTS}
        digests = {k: str(dist[k]) for k in ("integrity", "shasum") if dist.get(k)}
        return str(dist.get("tarball") or ""), digests, hooks
    files = [f for f in pypi_files(pkg.doc, version, None) if isinstance(f, dict)]
    # what uvx/pip would install: a pure wheel first, else the sdist (whose build runs code)
    files.sort(
        key=lambda f: (
            f.get("packagetype") != "bdist_wheel",
            not str(f.get("filename", "")).endswith("-none-any.whl"),
        )
    )
    if not files:
        return "", {}, {}
    digests = files[0].get("digests") or {}
    sha = {"sha256": str(digests["sha256"])} if digests.get("sha256") else {}
    # PyPI mirrors may give file URLs relative to the JSON document
    return urljoin(pkg.doc_url, str(files[0].get("url") or "")), sha, {}


def _deep(run: _Run, pkg: _Package) -> None:
    """Download, verify, unpack and scan each version in use of ``pkg``, once."""
    if pkg.doc is None:
        return
    for version, uses in _versions_in_use(run, pkg).items():
        for issue in _deep_one(run, pkg, version, uses):
            for i in uses:
                run.add(i, issue)


def _deep_one(run: _Run, pkg: _Package, version: str, uses: list[int]) -> list[Issue]:
    npm = pkg.registry.ecosystem == "npm"
    shown = f"{pkg.name}@{version}" if npm else f"{pkg.name}=={version}"
    try:
        url, digests, hooks = _archive_of(pkg, version)
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        run.error(uses, _malformed(pkg, f"has an unexpected shape ({type(exc).__name__})"))
        return []
    if not url:
        run.error(uses, f"{shown}: the registry lists no archive to download for --deep")
        return []
    try:
        data = run.fetcher.download(url, pkg.registry, named_by=f"the registry's entry for {shown}")
    except LookupFailed as exc:
        run.error(uses, f"{shown}: {exc}")
        return []
    try:
        verify_integrity(
            data,
            integrity=digests.get("integrity"),
            sha256=digests.get("sha256"),
            shasum=digests.get("shasum"),
        )
    except IntegrityError as exc:
        return [
            Issue(
                "package-integrity-mismatch",
                f"the archive of {shown} failed its check: {exc}; it was not unpacked",
                evidence=clip(str(exc)),
            )
        ]
    with tempfile.TemporaryDirectory(prefix="portcullis-deep-") as tmp:
        root = Path(tmp) / "pkg"
        root.mkdir(mode=0o700)
        try:
            extracted = extract_archive(data, root)
        except UnsafeArchive as exc:
            return [
                Issue(
                    "package-unsafe-archive",
                    f"the archive of {shown} is unsafe: {exc}",
                    evidence=clip(str(exc)),
                )
            ]
        except ArchiveError as exc:
            run.error(uses, f"{shown}: could not unpack the archive for --deep: {exc}")
            return []
        hits = scan_tree(root, extracted.files, install_scripts=hooks)
    return _code_issue(shown, hits)


def _code_issue(shown: str, hits: list[Hit]) -> list[Issue]:
    """One ``package-dangerous-code`` issue per package: the worst hit quoted, all counted."""
    if not hits:
        return []
    worst = max(hits, key=lambda h: SEVERITIES.index(h.severity))
    kinds = sorted({h.description for h in hits})
    more = f" ({len(hits)} places)" if len(hits) > 1 else ""
    return [
        Issue(
            "package-dangerous-code",
            f"code in {shown} {'; '.join(kinds)}{more}",
            evidence=worst.evidence,
            severity=worst.severity,
        )
    ]


def _findings(run: _Run) -> list[Finding]:
    findings: list[Finding] = []
    order = list(RULES)
    for (index, rule_id), issues in sorted(
        run.issues.items(), key=lambda kv: (kv[0][0], order.index(kv[0][1]))
    ):
        server, ref = run.pairs[index]
        # one finding per rule and reference keeps fingerprints unique; the worst one wins
        issue = max(issues, key=lambda x: SEVERITIES.index(x.severity or RULES[x.rule].severity))
        findings.append(
            Finding.of(
                RULES[rule_id],
                server,
                issue.message,
                fix=issue.fix,
                pointer=ref.pointer,
                evidence=issue.evidence,
                severity=issue.severity,
            )
        )
    return findings
