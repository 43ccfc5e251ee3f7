"""The session's side of the audit log: which fields a record carries, and the arguments' form.

Observe mode adds the ``observed`` field (docs/audit.md): the guards' inputs on requests, and
the tools a server lists (names, annotations, input schemas) on ``tools/list`` results. The
helpers that shape it live here too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

import msgspec

from portcullis.policy.compiled import ServerPolicy

__all__ = ["MAX_OBSERVED_SCHEMA", "Auditor", "observe_warning", "observed_text", "observed_tool"]

_ANNOTATIONS: Final = (
    "title",
    "readOnlyHint",
    "destructiveHint",
    "idempotentHint",
    "openWorldHint",
)
#: An input schema whose canonical JSON is longer is left out of the observed record.
MAX_OBSERVED_SCHEMA: Final = 16 * 1024


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
        reason = record.get("reason")
        if (
            isinstance(reason, str)
            and self._arguments != "full"
            and record.get("decision") not in (None, "allow")
        ):
            # A denial's reason quotes the argument it refused (a path, a URL): redacted like
            # the arguments. Allow reasons are the policy's own words, and the hot path.
            from portcullis.detect.redact import redact_value

            record["reason"] = redact_value(reason, pii=True)[0]
        self._append(record)

    def observed_list(
        self,
        era: str,
        rid: Any,
        method: str,
        subject: str,
        kept: list[Any],
        hidden: dict[str, int],
    ) -> None:
        """Observe mode: record a list result the client receives in full.

        Always for ``tools/list`` (rule ``tools.observed``, the tools in ``observed``); for the
        other lists only when the policy would have hidden entries. ``hidden`` counts, by rule,
        the entries the policy refuses (``pin.*`` ones were really withheld).
        """
        would = {k: n for k, n in hidden.items() if not k.startswith("pin.")}
        fields: dict[str, Any] = {}
        if subject == "tool":
            fields["observed"] = {"tools": [observed_tool(t) for t in kept if isinstance(t, dict)]}
        elif not would:
            return
        if would:
            fields["reason"] = (
                f"{sum(would.values())} {subject} entries would be hidden by policy "
                "(observe mode: listed anyway)"
            )
            fields["findings"] = would
        self.write(
            direction="s2c",
            era=era,
            method=method,
            id=rid,
            decision="allow",
            rule=f"{subject}s.observed",
            **fields,
        )


def observe_warning(policy: ServerPolicy) -> str | None:
    """The one-line start-up warning for a server in observe mode (None in enforce mode)."""
    if policy.mode != "observe":
        return None
    relaxed = policy.observe.relaxed()
    kept = [i for i in ("redaction", "pins", "approvals") if i not in relaxed]
    what = ", ".join(relaxed) if relaxed else "none"
    if kept:
        what += f"; kept: {', '.join(kept)}"
    return (
        f'WARNING: observe mode for server "{policy.name}": policy decisions are logged, '
        f"NOT enforced (relaxed: {what})"
    )


def observed_text(text: str) -> str:
    """A value as ``observed`` records it: secrets and personal data redacted, capped."""
    from portcullis.detect.redact import redact_value
    from portcullis.gateway.guards.arguments import cap_observed

    return cap_observed(str(redact_value(text, pii=True)[0]))


def observed_tool(tool: dict[str, Any]) -> dict[str, Any]:
    """One tools/list entry as observe mode records it: name, annotations, input schema."""
    entry: dict[str, Any] = {"name": tool.get("name")}
    annotations = tool.get("annotations")
    picked = (
        {k: annotations[k] for k in _ANNOTATIONS if k in annotations}
        if isinstance(annotations, dict)
        else {}
    )
    if picked:
        entry["annotations"] = picked
    schema = tool.get("inputSchema")
    if schema is not None:
        try:
            size = len(msgspec.json.encode(schema, order="sorted"))
        except (TypeError, ValueError, msgspec.EncodeError):
            size = MAX_OBSERVED_SCHEMA + 1
        if size <= MAX_OBSERVED_SCHEMA:
            entry["input_schema"] = schema
    return entry
