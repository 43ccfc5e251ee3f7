"""One scan, start to finish: discover, check, vet, inspect, apply the baseline.

Each stage is imported when it runs: a static ``--offline`` scan never loads the HTTP client,
and only ``--inspect`` loads the sandbox.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from portcullis.scan.model import SEVERITIES, Rule, ScanError, ScanResult

__all__ = ["ScanOptions", "rules_for", "scan"]


# Findings that mean part of the scan did not run, and the error kind each also becomes.
_CRASH_RULES = {"scan-internal-error": "config", "inspect-detector-failed": "inspect"}


@dataclass
class ScanOptions:
    """What to scan and how; the defaults are the machine the scan runs on."""

    paths: Sequence[Path] = ()
    offline: bool = False
    inspect: bool = False
    yes: bool = False
    deep: bool = False
    baseline: Path | None = None
    home: Path = field(default_factory=Path.home)
    cwd: Path | None = field(default_factory=Path.cwd)
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    system: str = field(default_factory=platform.system)
    state_dir: Path | None = None
    """Pins, the registry cache and the last report; ``None`` = the Portcullis state dir."""


def scan(options: ScanOptions, progress: Callable[[str], None] = lambda _: None) -> ScanResult:
    """Run one scan; every problem it could not get past is in ``result.errors``."""
    from portcullis.scan import discover
    from portcullis.scan.checks import run_checks

    clock = time.perf_counter()
    result = ScanResult(
        started=datetime.now(UTC).isoformat(timespec="seconds"),
        options={
            "paths": [str(p) for p in options.paths],
            "offline": options.offline,
            "inspect": options.inspect,
            "deep": options.deep,
        },
    )
    progress("finding configurations")
    if options.paths:
        files, errors = discover.load_paths(options.paths)
    else:
        files, errors = discover.discover(
            home=options.home, cwd=options.cwd, env=options.env, system=options.system
        )
    result.files, result.errors = files, list(errors)
    progress(f"checking {len(result.servers)} servers in {len(files)} files")
    result.findings = run_checks(files)
    _guarded("package vetting", "vet", _vet, options, result, progress)
    if options.inspect:
        _guarded("live inspection", "inspect", _inspect, options, result, progress)
    # A crashed check or detector is also an error: as a finding alone, --fail-on critical or
    # a baseline entry for its rule would let an unchecked entry pass as clean.
    result.errors += [
        ScanError(f.message, f.file, f.line, f.server, kind=_CRASH_RULES[f.rule])
        for f in result.findings
        if f.rule in _CRASH_RULES
    ]
    _defuse(result)
    if options.baseline is not None:
        from portcullis.scan import baseline

        baseline.load(options.baseline).apply(result)
    rank = {s: i for i, s in enumerate(SEVERITIES)}
    result.findings.sort(
        key=lambda f: (-rank[f.severity], f.file or "", f.line or 0, f.server or "", f.rule)
    )
    result.duration_s = round(time.perf_counter() - clock, 3)
    return result


def _defuse(result: ScanResult) -> None:
    r"""Escape line breaks that server names and file paths carry into messages and fixes.

    Reports keep the newlines of Portcullis's own messages, so a name like ``"x\n\nNo
    findings."`` quoted in one could otherwise forge lines of the report.
    """
    import dataclasses

    from portcullis.scan.report._common import safe

    hostile = {
        text
        for text in (
            *(s.name for s in result.servers),
            *(str(f.path) for f in result.files),
        )
        if "\n" in text or "\r" in text
    }
    if not hostile:
        return

    def clean(text: str) -> str:
        for raw in sorted(hostile, key=len, reverse=True):
            text = text.replace(raw, safe(raw))
        return text

    result.findings = [
        dataclasses.replace(f, message=clean(f.message), fix=clean(f.fix)) for f in result.findings
    ]
    result.errors = [dataclasses.replace(e, message=clean(e.message)) for e in result.errors]


def _guarded(
    what: str,
    kind: str,
    stage: Callable[[ScanOptions, ScanResult, Callable[[str], None]], None],
    options: ScanOptions,
    result: ScanResult,
    progress: Callable[[str], None],
) -> None:
    """Run a stage; a bug in it is an error (exit 2) beside the findings, never a crash.

    An uncaught exception would exit 1 (or worse, lose the other stages' findings); the
    message names only the exception type, as its text may quote registry or server data.
    """
    try:
        stage(options, result, progress)
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as exc:
        result.errors.append(
            ScanError(
                f"{what} failed ({type(exc).__name__}); its results are incomplete. "
                "Please report this bug",
                kind=kind,
            )
        )


def _state(options: ScanOptions) -> Path:
    if options.state_dir is not None:
        return options.state_dir
    from portcullis._state import state_dir

    return state_dir()


def _vet(options: ScanOptions, result: ScanResult, progress: Callable[[str], None]) -> None:
    from portcullis.scan.packages import package_refs

    refs = [(s, ref) for s in result.servers if s.enabled for ref in package_refs(s)]
    if not refs:
        return
    from portcullis.scan.vet import vet_packages

    where = "offline" if options.offline else "against the registries"
    progress(f"vetting {len({(r.ecosystem, r.name) for _, r in refs})} packages {where}")
    findings, errors = vet_packages(
        refs,
        offline=options.offline,
        deep=options.deep,
        cache_dir=_state(options) / "scan-cache",
    )
    result.findings.extend(findings)
    result.errors.extend(errors)


def _inspect(options: ScanOptions, result: ScanResult, progress: Callable[[str], None]) -> None:
    from portcullis.scan import inspect

    servers = [s for s in result.servers if s.enabled]
    progress(f"inspecting {len(servers)} servers")
    # --yes skips the question only where the sandbox holds the server; inspect_servers
    # still asks before an unsandboxed start, so consent is always the terminal's.
    report = inspect.inspect_servers(
        servers,
        consent=inspect.tty_consent(),
        state_dir=_state(options),
        yes=options.yes,
        log=progress,
    )
    result.findings.extend(report.findings)
    result.errors.extend(report.errors)
    result.inspected = report.inspected


def rules_for(result: ScanResult) -> dict[str, Rule]:
    """Metadata of every rule the result mentions (SARIF lists them).

    The vetting and inspection modules are imported only when their rules are needed.
    """
    from portcullis.scan.checks import RULES

    rules = dict(RULES)
    wanted = {f.rule for f in (*result.findings, *result.suppressed)}
    if wanted - rules.keys():
        from portcullis.scan.vet import RULES as VET

        rules.update(VET)
    if wanted - rules.keys():
        from portcullis.scan.inspect import RULES as LIVE

        rules.update(LIVE)
    return rules
