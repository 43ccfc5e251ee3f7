"""Live inspection (``portcullis scan --inspect``): start or connect to each server and read it.

For each configured server: start it (stdio) inside the sandbox, or connect to it (HTTP); list
its tools, prompts, resources and instructions (:mod:`portcullis.scan.probe`); run the
injection detectors over every definition; pin what it showed in the same pin files the gateway
uses, so the next scan (and the gateway) shows what changed; and, across all servers, find the
toxic flows (:mod:`portcullis.scan.toxicflow`).

Starting a server runs code from the configuration, so it is never done silently:

- with the sandbox available, ``--yes`` starts servers without asking; without ``--yes`` each
  start is asked on the terminal, showing the exact command (environment *names* only);
- with the sandbox unavailable, each start is asked even with ``--yes``, saying it would run
  unsandboxed;
- with no terminal to ask on, the server is skipped and reported as an ``inspect`` error.

The sandbox (:func:`portcullis.sandbox.launch.prepare`) gets a least-privilege policy made
here: no network (``npx``/``uvx`` servers run the version already in their cache, so nothing is
downloaded; one that is not there fails to start with the command that installs it), no writes
outside a private ``/tmp``, and read-only access to the runtime and to the paths the entry's
arguments name.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from portcullis.scan.checks._util import host_of, is_loopback, redact_url
from portcullis.scan.consent import Consent, always, tty_consent, visible
from portcullis.scan.model import Finding, Rule, ScanError, Server, Severity
from portcullis.scan.probe import (
    HttpChannel,
    Listing,
    ProbeError,
    StartError,
    env_refs,
    list_server,
    resolve_refs,
    started,
)

__all__ = [
    "RULES",
    "Consent",
    "InspectionReport",
    "always",
    "inspect_servers",
    "tty_consent",
]

_SEV_ORDER: Final[tuple[Severity, ...]] = ("info", "low", "medium", "high", "critical")
_EVIDENCE_MAX: Final = 600
_DIFF_MAX: Final = 2000
_NOUN: Final = {
    "tools": "tool",
    "prompts": "prompt",
    "resources": "resource",
    "resourceTemplates": "resource template",
    "server": "server instructions",
}
# Scopes the user's own client settings live in; project, plugin and named files may come from
# a repository the user is only looking at.
_OWN_SCOPES: Final = frozenset({"user", "local", "managed"})
_USERINFO: Final = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://)[^\s/@]+@")
_REVIEW = (
    "review it with `portcullis pin show --server {s}`; "
    "approve with `portcullis pin approve --server {s}`"
)


def _rule(id_: str, title: str, severity: Severity, help_: str, *checklist: Any) -> Rule:
    return Rule(id_, title, severity, tuple(checklist), help_)


#: Every rule live inspection emits.
RULES: Final[dict[str, Rule]] = {
    r.id: r
    for r in (
        _rule(
            "tool-poisoning",
            "Tool definition carries instructions aimed at the model",
            "high",
            "A tool, prompt or resource description that tells the model to read secrets, steer "
            "arguments or hide what it does is a tool-poisoning attack: the model reads every "
            "description as trusted context. Remove the server, or pin a reviewed version and "
            "deny the tool in the gateway policy.",
            "vetted-pinned-packages",
            "regular-review",
        ),
        _rule(
            "hidden-instructions",
            "Instructions hidden from the user in a definition",
            "high",
            "Text wrapped in fake <IMPORTANT>/<system> tags or carried by invisible characters "
            "reaches the model but not the person reviewing the tool. Treat the server as "
            "hostile; remove it or deny the tool.",
            "vetted-pinned-packages",
            "filtered-sensitive-data",
        ),
        _rule(
            "injection-in-instructions",
            "Server instructions carry a prompt injection",
            "high",
            "A server's initialize/discover instructions go into the model's context. "
            "Instructions that override the user, ask for secrets or demand secrecy are an "
            "injection; remove the server or run it behind the gateway with `injection: block`.",
            "vetted-pinned-packages",
            "filtered-sensitive-data",
        ),
        _rule(
            "hidden-unicode",
            "Invisible or look-alike characters in a definition",
            "high",
            "Unicode tag characters, zero-width and bidi controls and terminal escapes hide "
            "text from people while models read it (the decoded message is in the evidence). "
            "The gateway strips them; review the server before trusting it.",
            "filtered-sensitive-data",
        ),
        _rule(
            "cross-server-shadowing",
            "A definition refers to another server's tools",
            "high",
            "A description that names another configured server's tool can change how the "
            "model uses that tool (tool shadowing), e.g. redirect its messages. Remove the "
            "server or keep the two servers in separate client configurations.",
            "least-privilege",
            "vetted-pinned-packages",
        ),
        _rule(
            "definition-changed",
            "A pinned definition changed (possible rug pull)",
            "high",
            "A definition changed since it was pinned: a server can show a harmless tool at "
            "install time and change it later. Review the diff with `portcullis pin show` and "
            "approve it with `portcullis pin approve --server NAME TOOL` only if it is safe.",
            "vetted-pinned-packages",
            "regular-review",
        ),
        _rule(
            "tools-added",
            "New definitions since the pins",
            "low",
            "The server shows definitions that were not pinned. Review and approve them with "
            "`portcullis pin approve --server NAME`.",
            "regular-review",
        ),
        _rule(
            "tools-removed",
            "Pinned definitions no longer shown",
            "info",
            "The server no longer shows definitions that were pinned; nothing to do unless "
            "the removal is unexpected.",
            "regular-review",
        ),
        _rule(
            "definitions-pinned",
            "Definitions pinned on first inspection",
            "info",
            "The first inspection recorded the server's definitions (trust on first use); "
            "later scans and the gateway report any change against them.",
            "regular-review",
        ),
        _rule(
            "toxic-flow",
            "Tools combine into a data-exfiltration path",
            "high",
            "Together these tools read untrusted content (which can carry an injection), read "
            "private data and send data out: an injection in the content can make the model "
            "steal the data. Split the servers across clients, remove one leg, or put the "
            "send-out tools behind confirmation in the gateway policy.",
            "least-privilege",
            "confirm-destructive",
        ),
        _rule(
            "inspect-detector-failed",
            "A detector failed on a definition",
            "high",
            "A detector crashed on this definition, so it was not checked; it is reported "
            "rather than passed as clean. Please report the bug with the server's name.",
            "regular-review",
        ),
    )
}


@dataclass
class InspectionReport:
    """What live inspection found and could not do."""

    findings: list[Finding] = field(default_factory=list)
    errors: list[ScanError] = field(default_factory=list)
    inspected: list[dict[str, Any]] = field(default_factory=list)


def _stderr_log(text: str) -> None:
    print(f"portcullis: {visible(text)}", file=sys.stderr)


def inspect_servers(
    servers: Sequence[Server],
    *,
    consent: Consent,
    state_dir: Path,
    yes: bool,
    timeout_s: float = 30.0,
    log: Callable[[str], None] = _stderr_log,
) -> InspectionReport:
    """Start or connect to each server, read it, check it, pin it; then find toxic flows.

    Servers are inspected one at a time (a consent prompt must not interleave with another).
    Disabled entries are skipped. Nothing here raises for a server's fault: every failure
    becomes a :class:`ScanError` of kind ``inspect``.
    """
    from portcullis.sandbox import detect

    report = InspectionReport()
    why_no_sandbox: str | None = None
    if any(s.transport == "stdio" and s.enabled for s in servers):
        why_no_sandbox = detect.unavailable(state_dir)
    seen: list[tuple[Server, Listing]] = []
    # The same server is often configured in several clients: start it (and ask) once.
    done: dict[str, Listing | str] = {}
    for server in servers:
        if not server.enabled:
            log(f'server "{server.name}" is disabled in {server.file}: not inspected')
            continue
        key = _launch_key(server)
        if key not in done:
            try:
                done[key] = _inspect_one(
                    server, consent, state_dir, yes, timeout_s, why_no_sandbox, log
                )
            except _Skip as skip:
                done[key] = skip.message
            except Exception as exc:  # fail closed, and go on with the other servers
                done[key] = f"inspection failed: {type(exc).__name__}: {exc}"
        listing = done[key]
        if isinstance(listing, str):
            report.errors.append(_error(server, listing))
            continue
        seen.append((server, listing))
        for problem in listing.problems:
            report.errors.append(_error(server, f"incomplete listing: {problem}"))
        try:
            findings = _detect(server, listing)
            changes, pin_findings, pin_errors = _pin(server, listing, state_dir, findings)
        except Exception as exc:  # fail closed: a bug here is an error, never a clean server
            report.errors.append(_error(server, f"inspection failed: {type(exc).__name__}: {exc}"))
            continue
        report.findings += findings + pin_findings
        report.errors += pin_errors
        report.inspected.append(_summary(server, listing, changes))
    report.findings += _shadowing(seen)
    report.findings += _flows(seen)
    return report


def _launch_key(server: Server) -> str:
    """What makes two entries the same running server (env and header values included)."""
    return json.dumps(
        [
            server.name,
            server.transport,
            server.command,
            server.args,
            sorted(server.env.items()),
            server.cwd,
            server.url,
            sorted(server.headers.items()),
        ]
    )


def _flows(seen: Sequence[tuple[Server, Listing]]) -> list[Finding]:
    """Toxic flows among the servers one client loads together (a model sees them all)."""
    from portcullis.scan import toxicflow

    out: list[Finding] = []
    clients: dict[str, list[tuple[Server, Listing]]] = {}
    for server, listing in seen:
        clients.setdefault(server.client, []).append((server, listing))
    for group in clients.values():
        by_name = {s.name: s for s, _ in group}
        flows = toxicflow.find_flows(
            (server.name, tool) for server, listing in group for tool in listing.tools
        )
        for flow in flows:
            sink = by_name[flow.legs[2].server]
            kind = "across servers" if flow.cross_server else f'inside server "{sink.name}"'
            out.append(
                Finding.of(
                    RULES["toxic-flow"],
                    sink,
                    f"toxic flow {kind} in {visible(sink.client)}: {visible(flow.describe())}",
                    severity="high" if flow.cross_server else "medium",
                    tool=" + ".join(visible(str(leg)) for leg in flow.legs),
                    evidence=_flow_evidence(flow),
                )
            )
    return out


def _flow_evidence(flow: Any) -> str:
    from portcullis.scan.toxicflow import CAPABILITIES

    parts = []
    for cap, leg, count in zip(CAPABILITIES, flow.legs, flow.alternatives, strict=True):
        more = f" (+{count - 1} other tools)" if count > 1 else ""
        parts.append(f"{cap}: {visible(str(leg))}{more}")
    return "; ".join(parts)


class _Skip(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _error(server: Server, message: str) -> ScanError:
    return ScanError(
        message=message,
        file=str(server.file),
        line=server.line,
        server=server.name,
        kind="inspect",
    )


def _inspect_one(
    server: Server,
    consent: Consent,
    state_dir: Path,
    yes: bool,
    timeout_s: float,
    why_no_sandbox: str | None,
    log: Callable[[str], None],
) -> Listing:
    if server.transport in ("http", "sse"):
        return _inspect_http(server, consent, timeout_s, log)
    if not server.command:
        raise _Skip("not started: the entry has no command")
    argv = [server.command, *server.args]
    sandboxed = why_no_sandbox is None
    # A repository's entry that pulls values from this environment (${AWS_SECRET_ACCESS_KEY})
    # hands the user's secrets to code the repository chose; what the server then shows (tool
    # names, descriptions) reaches the report, which CI may publish. Only a person may agree.
    pulled = env_refs(server.env) if server.scope not in _OWN_SCOPES else []
    if not (yes and sandboxed and not pulled):
        try:
            agreed = bool(consent(server, argv, sandboxed))
        except Exception as exc:  # a broken prompt is a refusal, never a start
            log(f"asking to start {visible(server.name)!r} failed: {exc}")
            agreed = False
        if not agreed:
            hint = "" if sandboxed else f" (the sandbox is not available: {why_no_sandbox})"
            if pulled:
                hint += (
                    f" (its {server.scope}-scope entry would pass {', '.join(pulled)} from your "
                    "environment: --yes does not cover that)"
                )
            raise _Skip(
                f"not started: no consent (no terminal to ask on, or the answer was no){hint}; "
                "rerun with --yes where the sandbox is available, or answer the prompt"
            )
    try:
        with started(server, argv, state_dir, sandboxed, log) as channel:
            try:
                return list_server(channel, timeout_s)
            except ProbeError as exc:
                # one line: messages keep their newlines, and the server must not forge
                # lines of the report
                tail = " | ".join(channel.stderr_tail().split("\n")).strip(" |")
                detail = f"; its stderr ends with: {tail[-800:]}" if tail else ""
                # the server was given the entry's env: its stderr may print those values
                given = resolve_refs(server.env)[0].values()
                message = _scrub(f"{exc}{detail}", [*given, *server.env.values()])
                raise _Skip(f"server-start-failed: {message}") from None
    except StartError as exc:
        raise _Skip(f"server-start-failed: {exc}") from None


def _inspect_http(
    server: Server, consent: Consent, timeout_s: float, log: Callable[[str], None]
) -> Listing:
    url = server.url
    if not url:
        raise _Skip("not inspected: the entry has no url")
    shown = visible(redact_url(url))
    if url.startswith("http://") and not is_loopback(host_of(url)):
        log(f'server "{visible(server.name)}": connecting over plain http:// to {shown}')
    refs = env_refs(server.headers)
    if refs and server.scope not in _OWN_SCOPES:
        # A repository's config chooses the URL: filling its headers from this environment
        # without asking would send the user's secrets to a host of the repository's choosing.
        # --yes does not cover it; only a person at the terminal does.
        try:
            agreed = bool(consent(server, ["connect", url], False))
        except Exception:  # a broken prompt is a refusal
            agreed = False
        if not agreed:
            raise _Skip(
                f"not inspected: its headers would send {', '.join(refs)} from your "
                f"environment to {shown}, and nobody agreed at a terminal (a {server.scope}-scope "
                "configuration chooses that URL; --yes does not cover it)"
            )
    refused = _forbidden_address(url)
    if refused:
        raise _Skip(f"not inspected: {shown} resolves to {refused}; no MCP server lives there")
    headers, missing = resolve_refs(server.headers)
    if missing:
        log(f'server "{visible(server.name)}": {", ".join(missing)} not set in the environment')
    channel = HttpChannel(url, headers, timeout_s=timeout_s)
    try:
        return list_server(channel, timeout_s)
    except ProbeError as exc:
        hint = ""
        if server.transport == "sse":
            hint = " (a legacy HTTP+SSE server: the SSE transport is not inspected)"
        detail = _scrub(str(exc), headers.values())
        raise _Skip(f"server-start-failed: cannot list {shown}: {detail}{hint}") from None
    finally:
        channel.close()


def _forbidden_address(url: str) -> str | None:
    """Why ``url``'s host must not be contacted: a cloud metadata or link-local address.

    A repository's configuration chooses the URL, and a scan in CI runs on a cloud machine: a
    POST to the metadata service is the classic server-side request forgery. (The name is
    resolved again when connecting; a rebinding DNS server is not stopped by this check.)
    """
    import ipaddress
    import socket
    from urllib.parse import urlsplit

    from portcullis.detect.urls import classify, default_resolve

    host = urlsplit(url).hostname
    if not host:
        return None
    try:
        addresses = [ipaddress.ip_address(host)]
    except ValueError:
        try:
            addresses = [ipaddress.ip_address(a.split("%")[0]) for a in default_resolve(host)]
        except (OSError, UnicodeError, socket.gaierror):
            return None  # the connection fails with its own, clearer error
    for addr in addresses:
        why = classify(addr)
        if why and ("metadata" in why or addr.is_link_local):
            return f"{addr} ({why})"
    return None


def _scrub(text: str, values: Iterable[str]) -> str:
    """``text`` without the given secret values, URL credentials or anything the detector finds.

    A server's stderr and error text can echo the environment it was given.
    """
    from portcullis.scan.checks._util import mask, scrub

    for value in sorted({v for v in values if len(v) >= 4}, key=len, reverse=True):
        text = text.replace(value, mask(value))
    text = _USERINFO.sub(r"\1***@", text)
    return scrub(text)


# -- detection ---------------------------------------------------------------------------


def _subject(kind: str, key: str) -> str:
    """``Finding.tool``: the tool name, or ``prompt:NAME`` / ``resource:URI`` for the others."""
    if kind == "tools":
        return visible(key)
    return f"{_NOUN[kind].replace(' ', '-')}:{visible(key)}"


def _definitions(listing: Listing) -> Iterator[tuple[str, str, dict[str, Any]]]:
    from portcullis.pins.compare import KEY_FIELDS

    for kind in ("tools", "prompts", "resources", "resourceTemplates"):
        for item in getattr(listing, kind):
            key = item.get(KEY_FIELDS[kind])
            yield kind, key if isinstance(key, str) else "?", item


@dataclass
class _Hit:
    severity: Severity
    evidence: list[str] = field(default_factory=list)


def _classify(rule: str, hidden_fields: set[str], pointer: str, instructions: bool) -> str:
    from portcullis.detect.unicode import HIDDEN_RULES

    if rule in HIDDEN_RULES or rule.startswith("unicode-"):
        return "hidden-unicode"
    if instructions:
        return "injection-in-instructions"
    if rule == "injection-tag" or pointer in hidden_fields:
        return "hidden-instructions"
    return "tool-poisoning"


def _detect(server: Server, listing: Listing) -> list[Finding]:
    """The detectors over every definition and the instructions, one finding per rule."""
    from portcullis.detect.injection import scan_definition, scan_injection
    from portcullis.detect.unicode import HIDDEN_RULES

    hits: dict[tuple[str, str, str], _Hit] = {}

    def add(rule: str, kind: str, key: str, severity: Severity, evidence: str) -> None:
        hit = hits.setdefault((rule, kind, key), _Hit(severity))
        if _SEV_ORDER.index(severity) > _SEV_ORDER.index(hit.severity):
            hit.severity = severity
        hit.evidence.append(evidence)

    for kind, key, item in _definitions(listing):
        try:
            found = scan_definition(item)
        except Exception as exc:  # fail closed: an unchecked definition is not a clean one
            add("inspect-detector-failed", kind, key, "high", f"{type(exc).__name__}: {exc}")
            continue
        hidden = {p for p, f in found if f.rule in HIDDEN_RULES}
        for pointer, f in found:
            rule = _classify(f.rule, hidden, pointer, instructions=False)
            add(rule, kind, key, f.severity, f"{pointer or '/'}: {f.rule}: {f.evidence}")
    if listing.instructions:
        try:
            found_text = scan_injection(listing.instructions, where="instructions")
        except Exception as exc:
            add("inspect-detector-failed", "server", "server", "high", repr(exc))
            found_text = []
        for f in found_text:
            rule = _classify(f.rule, set(), "", instructions=True)
            add(rule, "server", "server", f.severity, f"instructions: {f.rule}: {f.evidence}")

    out: list[Finding] = []
    for (rule, kind, key), hit in hits.items():
        what = "the server instructions" if kind == "server" else f'{_NOUN[kind]} "{visible(key)}"'
        out.append(
            Finding.of(
                RULES[rule],
                server,
                f"{RULES[rule].title}: {what}",
                severity=hit.severity,
                tool=None if kind == "server" else _subject(kind, key),
                evidence=_trim("; ".join(visible(e) for e in hit.evidence), _EVIDENCE_MAX),
            )
        )
    return out


def _strings(value: Any) -> Iterator[str]:
    """Every string in a definition, property names included."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _distinctive(name: str) -> bool:
    """A tool name unlikely to appear in prose by chance (``send_message``, ``readFile``)."""
    if len(name) < 4:
        return False
    return len(name) >= 8 or not name.isalpha() or name != name.lower()


def _shadowing(seen: Sequence[tuple[Server, Listing]]) -> list[Finding]:
    """Definitions that name a tool of another inspected server (and not one of their own)."""
    names = {
        s.name: sorted({t["name"] for t in lst.tools if isinstance(t.get("name"), str)})
        for s, lst in seen
    }
    out: list[Finding] = []
    for server, listing in seen:
        own = set(names[server.name])
        patterns = [
            (other, tool, re.compile(rf"(?<![\w-]){re.escape(tool)}(?![\w-])"))
            for other, tools in names.items()
            if other != server.name
            for tool in tools
            if tool not in own and _distinctive(tool)
        ]
        if not patterns:
            continue
        for kind, key, item in _definitions(listing):
            # The definition minus its own name: a tool called like another is not shadowing.
            body = {k: v for k, v in item.items() if k not in ("name", "uri", "uriTemplate")}
            text = "\n".join(_strings(body))
            named = [(o, t) for o, t, rx in patterns if rx.search(text)]
            if not named:
                continue
            which = ", ".join(f'"{visible(t)}" of server "{visible(o)}"' for o, t in named)
            out.append(
                Finding.of(
                    RULES["cross-server-shadowing"],
                    server,
                    f'{_NOUN[kind]} "{visible(key)}" names {which}',
                    tool=_subject(kind, key),
                    evidence=_trim(visible(" ".join(text.split())), _EVIDENCE_MAX),
                )
            )
    return out


# -- pinning -----------------------------------------------------------------------------


def _pin(
    server: Server, listing: Listing, state_dir: Path, findings: Sequence[Finding]
) -> tuple[list[str], list[Finding], list[ScanError]]:
    """Record what the server showed in the gateway's pin files; report changes since."""
    from portcullis.pins import PinStore, PinStoreError, launch_id
    from portcullis.pins.compare import keyed
    from portcullis.pins.diff import diff_definitions

    if server.transport == "stdio":
        launch = launch_id(server.name, server.command, server.args, env=server.env.keys())
    else:
        launch = launch_id(server.name, None, url=server.url)
    store = PinStore(state_dir / "pins")
    # Held back from trust on first use, as the gateway does: a definition with a high
    # injection finding is pinned only by a person.
    held: dict[str, set[str]] = {}
    for f in findings:
        if _SEV_ORDER.index(f.severity) >= _SEV_ORDER.index("high"):
            kind, key = _unsubject(f.tool)
            held.setdefault(kind, set()).add(key)
    changes: list[str] = []
    out: list[Finding] = []
    errors: list[ScanError] = []
    try:
        pinset = store.load(server.name, launch)
    except PinStoreError as exc:
        return changes, out, [_error(server, f"pins not checked: {exc}")]
    changes += [f"package version: {visible(c)}" for c in pinset.version_changes]
    pinned_now: dict[str, int] = {}
    identity = {"serverInfo": listing.server_info, "instructions": listing.instructions}
    kinds: list[tuple[str, list[dict[str, Any]]]] = [("server", [identity])]
    for kind in ("tools", "prompts", "resources", "resourceTemplates"):
        capability = "resources" if kind == "resourceTemplates" else kind
        # A list that failed is not compared: its absence is not a removal.
        if capability in listing.capabilities and kind not in listing.failed:
            kinds.append((kind, getattr(listing, kind)))
    for kind, items in kinds:
        try:
            current = keyed(kind, items)
        except ValueError as exc:
            errors.append(_error(server, f"{_NOUN[kind]}s not pinned: {exc}"))
            continue
        first = kind not in pinset.pins
        try:
            result = store.record(
                server.name, launch, kind, current, hold=held.get(kind, set()) & current.keys()
            )
        except (PinStoreError, ValueError) as exc:
            errors.append(_error(server, f"pins not recorded: {exc}"))
            continue
        noun = _NOUN[kind]
        if first:
            pinned_now[kind] = len(current) - len(held.get(kind, set()) & current.keys())
            continue
        old = pinset.pins.get(kind, {})
        for key in result.changed:
            diff = diff_definitions({key: old[key]}, {key: current[key]})
            changes.append(f"{noun} {visible(key)}: changed since it was pinned")
            out.append(
                Finding.of(
                    RULES["definition-changed"],
                    server,
                    f'{noun} "{visible(key)}" changed since it was pinned (possible rug pull); '
                    + _REVIEW.format(s=visible(server.name)),
                    tool=None if kind == "server" else _subject(kind, key),
                    evidence=_trim(diff, _DIFF_MAX),
                )
            )
        for key in result.new:
            changes.append(f"{noun} {visible(key)}: new, not pinned")
            out.append(
                Finding.of(
                    RULES["tools-added"],
                    server,
                    f'new {noun} "{visible(key)}" since the pins; '
                    + _REVIEW.format(s=visible(server.name)),
                    tool=_subject(kind, key),
                )
            )
        for key in result.removed:
            changes.append(f"{noun} {visible(key)}: removed")
            out.append(
                Finding.of(
                    RULES["tools-removed"],
                    server,
                    f'pinned {noun} "{visible(key)}" is no longer shown',
                    tool=_subject(kind, key),
                )
            )
    counted = {k: n for k, n in pinned_now.items() if k != "server"}
    if pinned_now:
        text = ", ".join(f"{n} {_NOUN[k]}{'' if n == 1 else 's'}" for k, n in counted.items() if n)
        summary = f"first inspection: pinned {text or 'the server identity'}"
        waiting = sum(len(held.get(k, set())) for k in pinned_now)
        if waiting:
            summary += (
                f"; {waiting} held back for review (high-severity findings): "
                f"`portcullis pin approve --server {visible(server.name)}` once reviewed"
            )
        changes.append(summary)
        out.append(Finding.of(RULES["definitions-pinned"], server, summary))
    return changes, out, errors


def _unsubject(tool: str | None) -> tuple[str, str]:
    """The (kind, key) behind a ``Finding.tool`` made by :func:`_subject`."""
    if tool is None:
        return "server", "server"
    for kind, noun in _NOUN.items():
        prefix = f"{noun.replace(' ', '-')}:"
        if kind != "tools" and tool.startswith(prefix):
            return kind, tool[len(prefix) :]
    return "tools", tool


def _summary(server: Server, listing: Listing, changes: list[str]) -> dict[str, Any]:
    def names(items: list[dict[str, Any]], key: str) -> list[str]:
        return [visible(str(i.get(key))) for i in items]

    return {
        "server": server.name,
        "client": server.client,
        "file": str(server.file),
        "tools": names(listing.tools, "name"),
        "prompts": names(listing.prompts, "name"),
        "resources": names(listing.resources, "uri")
        + names(listing.resourceTemplates, "uriTemplate"),
        "instructions": bool(listing.instructions),
        "changes": changes,
    }


# -- text --------------------------------------------------------------------------------


def _trim(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
