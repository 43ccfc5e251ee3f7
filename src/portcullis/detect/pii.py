"""Personal data detection (opt-in): e-mail, phone, payment card, IBAN, US SSN, IP addresses.

The rules live in ``rules/pii.toml`` and run in the same single engine pass as the secret
rules (``scan_secrets(text, pii=True)``); this module is the PII-only view of that pass.

Decisions: phone numbers need a ``+`` country code (E.164) or NANP separators, so bare digit
runs (ids, timestamps) are not phones; card numbers need Luhn, a known IIN range and at least
three distinct digits (so ``4111 1111 1111 1111``, the published test card, is not reported);
a dotted quad after "version", "v" or "release" is a version, and loopback, unspecified and
broadcast addresses are not personal; ``@example.com`` and reserved test domains are not.
"""

from __future__ import annotations

from portcullis.detect.findings import Finding
from portcullis.detect.secrets import scan_secrets

__all__ = ["scan_pii"]


def scan_pii(text: str, *, engine: str | None = None) -> list[Finding]:
    """Only the PII findings in ``text`` (secrets that overlap them still win the span)."""
    return [f for f in scan_secrets(text, pii=True, engine=engine) if f.kind == "pii"]
