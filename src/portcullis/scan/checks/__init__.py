"""The static checks of ``portcullis scan``: config hygiene, read from the files alone.

:func:`run_checks` runs every server check on every server and every file check on every
file. Checks are pure functions of the parsed config (no I/O, nothing launched). A check that
raises does not take the others with it, and never makes a scan look clean: its failure
becomes a ``scan-internal-error`` finding (high) naming the check.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from portcullis.scan.checks import approval, docker, paths, pinning, remote, secrets, shell, wrapped
from portcullis.scan.model import ConfigFile, Finding, Rule, Server

__all__ = ["FILE_CHECKS", "RULES", "SCAN_INTERNAL_ERROR", "SERVER_CHECKS", "run_checks"]

ServerCheck = Callable[[Server], Iterable[Finding]]
FileCheck = Callable[[ConfigFile], Iterable[Finding]]

SCAN_INTERNAL_ERROR = Rule(
    id="scan-internal-error",
    title="A scan check failed",
    severity="high",
    checklist=("regular-review",),
    help=(
        "One of the scanner's checks crashed on this entry, so the entry was not fully "
        "checked; the scan fails closed instead of reporting it clean. Please report the "
        "check's name and the entry's shape (not its secrets) as a Portcullis bug, and "
        "review the entry by hand meanwhile."
    ),
)

# Name → check. Names appear in scan-internal-error findings; order is report order.
SERVER_CHECKS: dict[str, ServerCheck] = {
    "paths": paths.check,
    "secrets": secrets.check,
    "pinning": pinning.check,
    "remote": remote.check,
    "docker": docker.check,
    "shell": shell.check,
    "approval": approval.check,
    "wrapped": wrapped.check,
}
FILE_CHECKS: dict[str, FileCheck] = {
    "approval-settings": approval.check_file,
}

RULES: dict[str, Rule] = {
    r.id: r
    for r in (
        *paths.RULES,
        *secrets.RULES,
        *pinning.RULES,
        *remote.RULES,
        *docker.RULES,
        *shell.RULES,
        *approval.RULES,
        *wrapped.RULES,
        SCAN_INTERNAL_ERROR,
    )
}


def _crashed(name: str, exc: BaseException, server: Server | None, cf: ConfigFile) -> Finding:
    # Only the exception's type: its message may quote a config value, which may be a secret.
    message = f'check "{name}" failed ({type(exc).__name__}); this entry was not fully checked'
    if server is not None:
        return Finding.of(SCAN_INTERNAL_ERROR, server, message, evidence=name)
    return Finding.of(SCAN_INTERNAL_ERROR, None, message, file=cf, line=1, evidence=name)


def run_checks(files: Sequence[ConfigFile]) -> list[Finding]:
    """Every static check on every server and file setting, in file and server order."""
    out: list[Finding] = []
    for cf in files:
        for name, file_check in FILE_CHECKS.items():
            try:
                out.extend(file_check(cf))
            except Exception as exc:
                out.append(_crashed(name, exc, None, cf))
        for server in cf.servers:
            for name, server_check in SERVER_CHECKS.items():
                try:
                    out.extend(server_check(server))
                except Exception as exc:
                    out.append(_crashed(name, exc, server, cf))
    return out
