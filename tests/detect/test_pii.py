"""PII rules (opt-in): e-mail, phone, payment cards, IBAN, US SSN, IP addresses."""

from __future__ import annotations

import pytest

from portcullis.detect.pii import scan_pii
from portcullis.detect.secrets import scan_secrets
from tests.detect.test_secrets_samples import card, iban

ENGINES = ["hyperscan", "re2"]


def _rules(text: str, engine: str = "hyperscan") -> list[str]:
    return [f.rule for f in scan_pii(text, engine=engine)]


def test_pii_is_opt_in() -> None:
    """Without pii=True, personal data is not reported."""
    text = "mail jane.doe@acme.io"
    assert scan_secrets(text) == []
    assert [f.rule for f in scan_secrets(text, pii=True)] == ["email-address"]


POSITIVES = [
    ("contact jane.doe@acme.io today", "email-address"),
    ("call +44 20 7946 0958 now", "phone-number"),
    ("call +14155552671", "phone-number"),
    ("call (415) 555-2671 now", "phone-number"),
    (f"card {card('4')} exp 12/29", "payment-card"),
    (f"card {card('51')}", "payment-card"),
    (f"amex {card('37', 15)}", "payment-card"),
    ("pay to " + iban("DE", 22), "iban"),
    ("pay to " + iban("NL", 18), "iban"),
    ("ssn 536-22-1234 on file", "us-ssn"),
    ("client 203.45.67.89 connected", "ipv4-address"),
    ("from 2a03:2880:f12f:83:face:b00c:0:25de", "ipv6-address"),
]


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize(("text", "rule"), POSITIVES)
def test_positive(text: str, rule: str, engine: str) -> None:
    """Each PII type is found, by both engines."""
    assert _rules(text, engine) == [rule]


def test_iban_mod97() -> None:
    """A valid IBAN is found; one wrong digit breaks mod-97 and it is not."""
    good = iban("FR", 27)
    assert _rules(f"IBAN {good}") == ["iban"]
    bad = good[:-1] + str((int(good[-1]) + 1) % 10)
    assert _rules(f"IBAN {bad}") == []


def test_iban_with_spaces() -> None:
    """The printed form with groups of four is found too."""
    good = iban("DE", 22)
    spaced = " ".join(good[i : i + 4] for i in range(0, len(good), 4))
    assert _rules(f"IBAN {spaced}") == ["iban"]


NEGATIVES = [
    "version 1.2.3.4",
    "see RFC 6749 Section 4.1.2.1",
    "subnet 10.0.0.0/8 and 192.168.0.0/16",
    "docs use 192.0.2.1 and 2001:db8::1",
    "localhost 127.0.0.1 and 0.0.0.0",
    "user@example.com",
    "icon@2x.png",
    "order 4111111111111112",
    "4111 1111 1111 1111",
    "ssn 000-12-3456",
    "ssn 666-12-3456",
    "ssn 900-12-3456",
    "ssn 123-45-6789",
    "timestamp 1732478400123",
    "id 123e4567-e89b-12d3-a456-426614174000",
    "call 555-1234",
    "std::vector<int>",
    "12:30:45",
]


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("text", NEGATIVES)
def test_negative(text: str, engine: str) -> None:
    """Versions, sections, networks, documentation ranges, bad checksums are not PII."""
    assert _rules(text, engine) == []


def test_card_evidence_masked() -> None:
    """A card number's evidence never holds the full number."""
    c = card("4")
    (f,) = scan_pii(f"card {c}")
    assert c not in f.evidence
    assert f.kind == "pii"
