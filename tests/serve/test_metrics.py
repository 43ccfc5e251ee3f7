"""Prometheus metrics of ``portcullis serve``, fed from audit records."""

from __future__ import annotations

from typing import Any

import prometheus_client
from prometheus_client.parser import text_string_to_metric_families

from portcullis.serve.metrics import Metrics, redaction_count


def _value(m: Metrics, name: str, **labels: str) -> float:
    value = m.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def _record(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "ts": "2026-11-25T00:00:00.000000Z",
        "seq": 1,
        "session": "sess-123",
        "principal": "alice@example.org",
        "server": "files",
        "direction": "c2s",
        "method": "tools/call",
        "id": 7,
        "tool": "read_text_file",
        "decision": "allow",
    }
    base.update(fields)
    return base


def test_calls_denials_and_latency_are_counted() -> None:
    """Decisions, denials by rule and the outcome's latency land in their metrics."""
    m = Metrics()
    m.observe(_record())
    m.observe(_record(direction="s2c", latency_ms=12.5))  # the same call's outcome
    m.observe(_record(decision="deny", rule="tools.deny"))
    m.observe(_record(decision="deny", rule="tools.deny", server="db"))
    calls = "portcullis_calls_total"
    assert _value(m, calls, server="files", method="tools/call", decision="allow") == 1
    assert _value(m, calls, server="files", method="tools/call", decision="deny") == 1
    assert _value(m, "portcullis_denials_total", server="files", rule="tools.deny") == 1
    assert _value(m, "portcullis_denials_total", server="db", rule="tools.deny") == 1
    assert _value(m, "portcullis_call_latency_seconds_count", server="files") == 1
    assert _value(m, "portcullis_call_latency_seconds_sum", server="files") == 0.0125
    assert _value(m, "portcullis_call_latency_seconds_bucket", server="files", le="0.025") == 1
    assert _value(m, "portcullis_call_latency_seconds_bucket", server="files", le="0.01") == 0


def test_redactions_count_redacted_findings_only() -> None:
    """A redact record counts its redacted findings; injection flags and allows do not count."""
    m = Metrics()
    m.observe(
        _record(
            direction="s2c",
            decision="redact",
            findings={"aws-access-key": 2, "email-address": 1, "injection-instruction": 4},
        )
    )
    m.observe(_record(direction="s2c", decision="flag", findings={"injection-instruction": 1}))
    assert _value(m, "portcullis_redactions_total", server="files") == 3
    calls = "portcullis_calls_total"
    assert _value(m, calls, server="files", method="tools/call", decision="redact") == 1
    assert _value(m, calls, server="files", method="tools/call", decision="flag") == 1
    assert redaction_count({"decision": "redact"}) == 1
    assert redaction_count({"decision": "allow", "findings": {"aws-access-key": 1}}) == 0


def test_client_chosen_values_never_become_labels() -> None:
    """Principals, tools, sessions and ids stay out of the output; odd methods fold to other."""
    m = Metrics()
    for i in range(50):
        m.observe(_record(method=f"x/made-up-{i}", tool=f"tool-{i}", id=i))
    body, ctype = m.render()
    text = body.decode()
    assert ctype.startswith("text/plain")
    for secret in ("alice@example.org", "sess-123", "read_text_file", "made-up", "tool-3"):
        assert secret not in text
    assert (
        _value(m, "portcullis_calls_total", server="files", method="other", decision="allow") == 50
    )


def test_observe_never_raises() -> None:
    """Malformed records are ignored rather than raising into the gateway."""
    m = Metrics()
    for bad in (
        {},
        {"decision": "deny"},
        {"decision": "redact", "findings": "nope", "server": 3},
        {"decision": "allow", "latency_ms": "slow"},
        {"decision": "allow", "latency_ms": -1},
        {"decision": "weird"},
    ):
        m.observe(bad)
    m.observe(None)  # type: ignore[arg-type]
    m.http_request(None, "x", "y")  # type: ignore[arg-type]
    assert _value(m, "portcullis_calls_total", server="-", method="other", decision="deny") == 1


def test_http_sessions_upstream_and_exposition() -> None:
    """HTTP requests, sessions and upstream health render as a parseable exposition."""
    m = Metrics()
    m.http_request("/mcp/{server}", 200, 0.003)
    m.http_request("/mcp/{server}", 401, 0.001)
    m.http_request("/mcp/{server}", 200, 0.002)
    m.sessions(4)
    m.upstream_up("files", True)
    m.upstream_up("db", False)
    body, _ = m.render()
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    http = {
        (s.labels["route"], s.labels["status"]): s.value
        for s in families["portcullis_http_requests"].samples
        if s.name.endswith("_total")
    }
    assert http == {("/mcp/{server}", "200"): 2.0, ("/mcp/{server}", "401"): 1.0}
    assert families["portcullis_sessions"].samples[0].value == 4
    up = {s.labels["server"]: s.value for s in families["portcullis_upstream_up"].samples}
    assert up == {"files": 1.0, "db": 0.0}


def test_private_registry() -> None:
    """Two Metrics objects coexist and nothing is registered on the global registry."""
    a, b = Metrics(), Metrics()
    a.observe(_record())
    assert (
        _value(b, "portcullis_calls_total", server="files", method="tools/call", decision="allow")
        == 0
    )
    names = {f.name for f in prometheus_client.REGISTRY.collect()}
    assert not any(n.startswith("portcullis") for n in names)
