from __future__ import annotations

import json
from typing import Any

import pytest

from portcullis.gateway.session import Auditor, Session
from portcullis.policy.compiled import Rules, ServerPolicy, ServerRequests


class Recorder:
    """Collects audit records in memory; can be told to fail like a full disk."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []
        self.fail = False

    def __call__(self, record: dict[str, Any]) -> None:
        from portcullis._exceptions import AuditError

        if self.fail:
            raise AuditError("disk full")
        self.records.append(record)


def make_session(recorder: Recorder | None = None, **policy: Any) -> Session:
    # The relay's own behaviour; redaction, injection and pinning have tests of their own.
    policy.setdefault("redact", ())
    policy.setdefault("injection", "off")
    policy.setdefault("pin", False)
    policy.setdefault(
        "tools",
        Rules(default="deny", allow=("echo", "get-*"), confirm=("write_*",), deny=("*delete*",)),
    )
    pins = policy.pop("pins", None)
    arguments = policy.pop("arguments", None)
    approvals = {k: policy.pop(k) for k in ("broker", "sealer") if k in policy}
    server = ServerPolicy(name="demo", **policy)
    auditor = Auditor(
        recorder if recorder is not None else Recorder(),
        lambda v: "hmac-sha256:x",
        arguments="digest",
        base={"policy": "p", "session": "s", "principal": "u", "server": "demo"},
    )
    return Session(
        server,
        auditor,
        log=lambda text: None,
        pins=pins,
        arguments=arguments,
        principal="u",
        **approvals,
    )


def msg(**fields: Any) -> bytes:
    return json.dumps({"jsonrpc": "2.0", **fields}).encode()


def decode(data: bytes) -> Any:
    return json.loads(data)


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


__all__ = ["Recorder", "ServerRequests", "decode", "make_session", "msg"]
