"""The session's audit writer: which fields a record keeps, and in what form."""

from __future__ import annotations

from typing import Any

import pytest

from portcullis.gateway.auditor import Auditor

SECRET = "sk_live_4eC39HqLyjWDarjtT1zdp7dc"  # a Stripe-format test key the detector knows


def _write(arguments: str, **fields: Any) -> dict[str, Any]:
    records: list[dict[str, Any]] = []
    Auditor(records.append, lambda v: "hmac-sha256:x", arguments=arguments, base={}).write(**fields)
    return records[0]


@pytest.mark.parametrize("arguments", ["digest", "redacted"])
def test_a_denial_reason_quoting_a_secret_is_redacted(arguments: str) -> None:
    """A deny reason that quotes an argument holding a secret keeps the secret out of the log."""
    reason = f"path /srv/{SECRET}/x is outside the allowed roots /srv/project"
    record = _write(arguments, decision="deny", rule="paths.outside-roots", reason=reason)
    assert SECRET not in record["reason"]
    assert record["reason"].startswith("path /srv/") and "[REDACTED:" in record["reason"]


def test_full_arguments_keep_the_reason_as_written() -> None:
    """With audit.arguments: full the arguments are kept, and so is the reason quoting them."""
    reason = f"path /srv/{SECRET} is outside the allowed roots"
    assert _write("full", decision="deny", reason=reason)["reason"] == reason


def test_allow_reasons_are_kept() -> None:
    """Allow records carry the policy's own words and are written unchanged."""
    assert _write("digest", decision="allow", reason="tool echo allowed")["reason"] == (
        "tool echo allowed"
    )
