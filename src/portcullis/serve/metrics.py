"""Prometheus metrics of ``portcullis serve``, fed from the audit records the gateway writes.

Everything lives on a private ``CollectorRegistry``: the global registry would mix in whatever
else the process (or a test) registered, and two ``Metrics`` objects would collide on it.

Label cardinality is kept bounded on purpose. ``server`` (names from the policy), ``method``
(MCP method names, folded to ``other`` unless known), ``decision`` (five values), ``rule``
(policy rule and detector ids, from the policy and the shipped rule files) and ``route``
(the app's own routes) are finite. Principals, tool names, session ids, request ids and
anything else a client chooses are never labels: every distinct value makes a new time series
in the process and in Prometheus, so a client could exhaust memory on both by varying them,
and principals in labels would also copy identities into a system with weaker access control.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

__all__ = ["LATENCY_BUCKETS", "Metrics", "redaction_count"]

#: From 0.5 ms (a relayed small call) to 30 s (a slow tool or an approval round).
LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)

# MCP methods kept as label values; any other string (a client may send anything) is "other".
_METHODS = frozenset(
    {
        "initialize",
        "ping",
        "tools/list",
        "tools/call",
        "resources/list",
        "resources/templates/list",
        "resources/read",
        "resources/subscribe",
        "resources/unsubscribe",
        "prompts/list",
        "prompts/get",
        "completion/complete",
        "logging/setLevel",
        "sampling/createMessage",
        "elicitation/create",
        "roots/list",
        "tasks/get",
        "tasks/list",
        "tasks/result",
        "tasks/cancel",
    }
)
_DECISIONS = frozenset({"allow", "deny", "confirm", "redact", "flag"})
# Findings of these detectors are flagged, not redacted (see gateway/guards/content.py).
_FLAG_RULE_PREFIXES = ("injection", "unicode")
# Rule ids come from the policy and the rule files, but a cap keeps a bug from exploding them.
_MAX_LABEL = 80


def _label(value: Any, default: str = "") -> str:
    if not isinstance(value, str) or not value:
        return default
    return value[:_MAX_LABEL]


def _method(value: Any) -> str:
    if isinstance(value, str) and (value in _METHODS or value.startswith("notifications/")):
        return value if value in _METHODS else "notifications"
    return "other"


def redaction_count(record: Mapping[str, Any]) -> int:
    """How many redactions an audit record reports (0 for records that redacted nothing).

    A ``redact`` record's ``findings`` count the redacted values by rule id, mixed with flagged
    injection findings (whose ids start with ``injection``/``unicode``), which are not counted.
    """
    if record.get("decision") != "redact":
        return 0
    findings = record.get("findings")
    if not isinstance(findings, Mapping) or not findings:
        return 1
    total = 0
    for rule, n in findings.items():
        if isinstance(n, int) and not str(rule).startswith(_FLAG_RULE_PREFIXES):
            total += max(0, n)
    return total or 1


class Metrics:
    """The gateway's metrics on their own registry; :meth:`render` is the /metrics body."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self._calls = Counter(
            "portcullis_calls",
            "Decisions of the gateway: one per client request, plus one per server message it "
            "denied, redacted or flagged; by server, method and decision.",
            ("server", "method", "decision"),
            registry=r,
        )
        self._denials = Counter(
            "portcullis_denials",
            "Denied MCP messages, by server and the rule that denied them.",
            ("server", "rule"),
            registry=r,
        )
        self._redactions = Counter(
            "portcullis_redactions",
            "Values redacted from server messages (secrets, PII), by server.",
            ("server",),
            registry=r,
        )
        self._latency = Histogram(
            "portcullis_call_latency_seconds",
            "Time from a request reaching the gateway to its answer leaving it, by server.",
            ("server",),
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self._http = Counter(
            "portcullis_http_requests",
            "HTTP requests served, by route template and status code.",
            ("route", "status"),
            registry=r,
        )
        self._http_seconds = Histogram(
            "portcullis_http_request_duration_seconds",
            "Time to answer an HTTP request, by route template.",
            ("route",),
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self._sessions = Gauge(
            "portcullis_sessions", "Open MCP sessions on this replica.", registry=r
        )
        self._upstream = Gauge(
            "portcullis_upstream_up",
            "1 when the upstream server is reachable, else 0.",
            ("server",),
            registry=r,
        )

    def observe(self, record: Mapping[str, Any]) -> None:
        """Count one audit record; cheap, and never raises (metrics must not break a call)."""
        with contextlib.suppress(Exception):  # a metric is never worth a failed call
            self._observe(record)

    def _observe(self, record: Mapping[str, Any]) -> None:
        server = _label(record.get("server"), "-")
        decision = record.get("decision")
        if decision not in _DECISIONS:
            return  # not a decision record (e.g. a session start)
        # A call leaves two records (the request's decision, then its outcome): the outcome is
        # counted only when it changed something, so an allowed call counts once.
        if record.get("direction") != "s2c" or decision != "allow":
            self._calls.labels(server, _method(record.get("method")), decision).inc()
        if decision == "deny":
            self._denials.labels(server, _label(record.get("rule"), "-")).inc()
        redacted = redaction_count(record)
        if redacted:
            self._redactions.labels(server).inc(redacted)
        latency = record.get("latency_ms")
        if isinstance(latency, int | float) and not isinstance(latency, bool) and latency >= 0:
            self._latency.labels(server).observe(latency / 1000.0)

    def http_request(self, route: str, status: int, seconds: float) -> None:
        """Count one HTTP request; ``route`` must be the route's template, never the raw path."""
        with contextlib.suppress(Exception):  # see observe
            route = _label(route, "-")
            self._http.labels(route, str(int(status))).inc()
            if seconds >= 0:
                self._http_seconds.labels(route).observe(seconds)

    def sessions(self, n: int) -> None:
        """Set the number of open sessions."""
        self._sessions.set(n)

    def upstream_up(self, server: str, up: bool) -> None:
        """Record whether upstream ``server`` is reachable."""
        self._upstream.labels(_label(server, "-")).set(1 if up else 0)

    def render(self) -> tuple[bytes, str]:
        """The exposition: ``(body, content type)`` for a /metrics response."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
