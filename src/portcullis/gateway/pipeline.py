"""Verdict types of the gateway's guards (defined with the detectors, which return them too)."""

from __future__ import annotations

from portcullis.detect.verdicts import Allow, Confirm, Deny, Verdict

__all__ = ["Allow", "Confirm", "Deny", "Verdict"]
