"""Verdicts: what a guard returns. Guards are pure; the session does the I/O.

They live with the detectors, which return them, because `detect` imports nothing from
`gateway`; `portcullis.gateway.pipeline` re-exports them.

msgspec structs rather than dataclasses: ``dataclasses`` imports ``inspect``, which costs about
8 ms of every gateway start.
"""

from __future__ import annotations

from typing import Literal

import msgspec

__all__ = ["Allow", "Confirm", "Deny", "Verdict"]


class Allow(msgspec.Struct, frozen=True):
    """Forward the message; ``rule`` names the rule that allowed it."""

    rule: str
    reason: str = ""
    decision: Literal["allow"] = "allow"


class Deny(msgspec.Struct, frozen=True):
    """Refuse the message; ``reason`` is written for the model and the human alike."""

    rule: str
    reason: str
    decision: Literal["deny"] = "deny"


class Confirm(msgspec.Struct, frozen=True):
    """Forward only after a person approves this exact call."""

    rule: str
    reason: str
    decision: Literal["confirm"] = "confirm"


Verdict = Allow | Deny | Confirm
