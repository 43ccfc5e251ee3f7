"""The session's side of the audit log: which fields a record carries, and the arguments' form."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["Auditor"]


class Auditor:
    """Writes the session's audit records; the chain and the file belong to the audit log."""

    def __init__(
        self,
        append: Callable[[dict[str, Any]], object] | None,
        digest: Callable[[Any], str],
        *,
        arguments: str,
        base: dict[str, Any],
    ) -> None:
        self._append = append
        self._digest = digest
        self._arguments = arguments
        self.base = base

    def args(self, value: Any) -> Any:
        """The form of the arguments the audit keeps: ``audit.arguments`` of the policy."""
        if self._arguments == "full":
            return value
        if self._arguments == "redacted":
            from portcullis.detect.redact import redact_value

            return redact_value(value, pii=True)[0]
        return self._digest(value)

    def write(self, **fields: Any) -> None:
        """Append one record; raise AuditError when it cannot be written."""
        if self._append is None:
            return
        record = dict(self.base)
        record.update((k, v) for k, v in fields.items() if v is not None)
        self._append(record)
