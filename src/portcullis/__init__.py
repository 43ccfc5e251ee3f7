"""Portcullis: a security gateway and scanner for the Model Context Protocol.

The package imports almost nothing at start-up: ``portcullis run`` is on every client's path.
"""

from __future__ import annotations

from portcullis._exceptions import (
    AuditError,
    ConfigError,
    GatewayError,
    PolicyError,
    PortcullisError,
)
from portcullis._version import __version__
from portcullis.gateway.pipeline import Allow, Confirm, Deny, Verdict

__all__ = [
    "Allow",
    "AuditError",
    "ConfigError",
    "Confirm",
    "Deny",
    "GatewayError",
    "PolicyError",
    "PortcullisError",
    "Verdict",
    "__version__",
]
