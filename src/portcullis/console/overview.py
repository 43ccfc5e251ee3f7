"""The overview page's data: each server's policy, sandbox, pins and today's traffic; last scan.

Pure gathering over the policy, the pin store, the audit log and ``<state>/scan/last.json``;
the sandbox probe (which may start bubblewrap once) is cached by the sandbox module itself.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from portcullis.console.render import visible

if TYPE_CHECKING:
    from portcullis.policy.compiled import CompiledPolicy, ServerPolicy

__all__ = ["Overview", "ScanSummary", "ServerView", "last_scan", "overview", "sandbox_state"]

_MAX_FINDINGS: Final = 200


@dataclass(frozen=True)
class ServerView:
    """One server's row of facts."""

    name: str
    facts: list[tuple[str, str]]  # (label, value), already visible
    sandbox: str
    pinned: int
    pending: int
    calls_today: int
    denials_today: int


@dataclass(frozen=True)
class ScanSummary:
    """The last scan's headline and its first findings."""

    started: str
    total: int
    severities: list[tuple[str, int]]
    findings: list[dict[str, str]] = field(default_factory=list)
    error: str = ""


@dataclass(frozen=True)
class Overview:
    """Everything on the overview page."""

    policy_source: str
    servers: list[ServerView]
    scan: ScanSummary | None


def _rules(label: str, rules: Any) -> str:
    parts = [f"default {rules.default}"]
    for name in ("allow", "confirm", "deny"):
        names = getattr(rules, name)
        if names:
            parts.append(f"{name}: {', '.join(names)}")
    return visible("; ".join(parts))


def _facts(server: ServerPolicy) -> list[tuple[str, str]]:
    facts = [("Mode", server.mode), ("Tools", _rules("tools", server.tools))]
    if server.prompts.default != "allow" or server.prompts.deny or server.prompts.confirm:
        facts.append(("Prompts", _rules("prompts", server.prompts)))
    if server.resources.default != "allow" or server.resources.deny or server.resources.confirm:
        facts.append(("Resources", _rules("resources", server.resources)))
    facts.append(("Roots", visible(", ".join(server.roots)) or "(none)"))
    facts.append(("Redact", ", ".join(server.redact) or "(nothing)"))
    facts.append(("Injection", server.injection))
    facts.append(("Pinning", "on" if server.pin else "off"))
    launch = server.launch
    where = launch.url or " ".join([launch.command or "", *launch.args]).strip()
    if where:
        from portcullis.detect.redact import redact_value

        # Launch lines carry credentials (URL passwords, tokens in arguments): never shown.
        shown, _ = redact_value(where)
        facts.append(("Launch", visible(str(shown))))
    return facts


def sandbox_state(server: ServerPolicy, why_not: str | None) -> str:
    """One line on the server's sandbox: off, on, or required but unavailable (and why)."""
    settings = server.sandbox
    if settings is None:
        return "off (no sandbox block in the policy)"
    if why_not is None:
        return f"on ({settings.profile} profile, network {settings.network})"
    if settings.required:
        return f"REQUIRED but unavailable: {visible(why_not)} (the server will not start)"
    return f"unavailable, running unsandboxed: {visible(why_not)}"


def _today_counts(log: Path | None) -> tuple[Counter[str], Counter[str]]:
    """Today's calls and denials by server (unreadable lines are skipped, as by the readers)."""
    calls: Counter[str] = Counter()
    denials: Counter[str] = Counter()
    if log is None:
        return calls, denials
    from portcullis.audit import log_files, query

    if not log_files(log):
        return calls, denials
    midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    for rec in query(log, since=midnight):
        if rec.get("direction") == "s2c":
            continue
        server = rec.get("server")
        if not isinstance(server, str):
            continue
        if rec.get("method") == "tools/call":
            calls[server] += 1
        if rec.get("decision") == "deny":
            denials[server] += 1
    return calls, denials


def last_scan(state: Path) -> ScanSummary | None:
    """The kept scan report's summary; None when no scan was saved."""
    from portcullis.scan.history import HistoryError, load_last

    try:
        data = load_last(state)
    except (HistoryError, OSError) as exc:
        return ScanSummary("", 0, [], error=visible(str(exc)))
    if data is None:
        return None
    summary = data.get("summary") if isinstance(data.get("summary"), dict) else {}
    assert isinstance(summary, dict)
    severity = summary.get("severity") if isinstance(summary.get("severity"), dict) else {}
    assert isinstance(severity, dict)
    findings = data.get("findings") if isinstance(data.get("findings"), list) else []
    assert isinstance(findings, list)
    shown = []
    for f in findings[:_MAX_FINDINGS]:
        if isinstance(f, dict):
            shown.append(
                {
                    k: visible(str(f.get(k) or ""))[:400]
                    for k in ("severity", "rule", "server", "title", "message")
                }
            )
    total = summary.get("findings")
    return ScanSummary(
        started=visible(str(data.get("started") or "")),
        total=total if isinstance(total, int) else len(findings),
        severities=[(visible(str(k)), int(v)) for k, v in severity.items() if isinstance(v, int)],
        findings=shown,
    )


def overview(
    policy: CompiledPolicy,
    *,
    state: Path,
    log: Path | None,
    sandbox_why_not: str | None,
) -> Overview:
    """The overview of every server the policy names (or its defaults when it names none)."""
    from portcullis.pins.store import PinStore

    servers = dict(policy.servers) or {policy.defaults.name or "default": policy.defaults}
    calls, denials = _today_counts(log)
    pins = PinStore(state / "pins").entries()
    views = []
    for name, server in sorted(servers.items()):
        mine = [p for p in pins if p.server == name]
        views.append(
            ServerView(
                name=visible(name),
                facts=_facts(server),
                sandbox=sandbox_state(server, sandbox_why_not),
                pinned=sum(len(v) for p in mine for v in p.hashes.values()),
                pending=sum(len(v) for p in mine for v in p.pending.values()),
                calls_today=calls[name],
                denials_today=denials[name],
            )
        )
    return Overview(
        policy_source=visible(policy.source or "built-in default policy"),
        servers=views,
        scan=last_scan(state),
    )
