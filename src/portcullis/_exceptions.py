"""The exceptions Portcullis raises.

Kept deliberately small::

    PortcullisError
     ├── ConfigError          a policy file, CLI argument or secret reference is unusable (exit 2)
     │    └── PolicyError     the policy file itself is invalid; names file, line and key path
     ├── AuditError           the audit log cannot be written or read (calls are refused)
     ├── GatewayError         the upstream server cannot be launched or has gone away
     └── ApprovalError        an approval could not be asked or answered (never an approval)
"""

from __future__ import annotations

__all__ = [
    "ApprovalError",
    "AuditError",
    "ConfigError",
    "GatewayError",
    "PolicyError",
    "PortcullisError",
]


class PortcullisError(Exception):
    """Base class of every error Portcullis raises on purpose."""


class ConfigError(PortcullisError):
    """Configuration that cannot be used: the command exits with status 2."""


class PolicyError(ConfigError):
    """An invalid policy file; the message names the file, the line and the key path."""

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        line: int | None = None,
        key: str | None = None,
    ) -> None:
        self.path = path
        self.line = line
        self.key = key
        where = ":".join(str(p) for p in (path, line) if p is not None)
        prefix = f"{where}: " if where else ""
        at = f"{key}: " if key else ""
        super().__init__(f"{prefix}{at}{message}")


class AuditError(PortcullisError):
    """The audit log cannot be written (so calls are refused) or read."""


class GatewayError(PortcullisError):
    """The upstream server cannot be launched or has gone away."""


class ApprovalError(PortcullisError):
    """An approval could not be asked or answered; it never counts as an approval."""
