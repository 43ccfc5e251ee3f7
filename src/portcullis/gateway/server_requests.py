"""Requests the server makes of the client: ``server_requests`` of the policy, both eras.

Legacy servers send ``sampling/createMessage``, ``elicitation/create`` and ``roots/list`` as
requests of their own (remapped to the gateway's ids); in 2026-07-28 they arrive inside an
``input_required`` result. This is the part of the session that decides on them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from portcullis._exceptions import AuditError
from portcullis.gateway import frames as fr
from portcullis.gateway.auditor import Auditor
from portcullis.gateway.frames import Frame, StrictJSONError
from portcullis.gateway.guards.content import ContentGuard
from portcullis.gateway.methods import INPUT_KINDS, RESERVED_ID_PREFIX
from portcullis.gateway.pipeline import Allow, Deny, Verdict
from portcullis.policy.compiled import ServerPolicy

__all__ = ["ServerRequests"]


class ServerRequests:
    """Server→client requests; mixed into the session, which provides the rest."""

    policy: ServerPolicy
    era: str
    _audit: Auditor
    _content: ContentGuard
    _ids: Iterator[int]
    _remapped: dict[str, tuple[Any, str]]
    _server_ids: dict[Any, str]
    _roots: dict[str, Any]
    _roots_keys: dict[tuple[str, str], set[str]]
    _outcomes: list[dict[str, Any]]

    def _audit_denial(
        self, direction: str, method: str | None, rid: Any, verdict: Deny, **extra: Any
    ) -> None:
        raise NotImplementedError

    def _input_required(self, msg: dict[str, Any], rid: Any, pending: Any) -> Deny | None:
        """Apply ``server_requests`` to a 2026 ``input_required`` result."""
        result = msg.get("result")
        if not isinstance(result, dict) or result.get("resultType") != "input_required":
            return None
        requests = result.get("inputRequests")
        if not isinstance(requests, dict):
            return None
        roots_keys: set[str] = set()
        for key, request in requests.items():
            method = request.get("method") if isinstance(request, dict) else None
            kind = INPUT_KINDS.get(method) if isinstance(method, str) else None
            if kind is None:
                continue
            setting = getattr(self.policy.server_requests, kind)
            if setting == "deny":
                verdict = Deny(
                    f"server_requests.{kind}",
                    f"the server asked the client for {method}, which the policy for "
                    f'server "{self.policy.name}" denies',
                )
                self._audit_denial("s2c", method, rid, verdict, tool=pending.tool)
                return verdict
            if setting == "policy":
                roots_keys.add(str(key))
        if roots_keys:
            self._roots_keys[(pending.method, pending.tool or "")] = roots_keys
        return None

    def _server_request(self, frame: Frame) -> list[Any]:
        method = frame.method or ""
        kind = INPUT_KINDS.get(method)
        if kind is not None:
            setting = getattr(self.policy.server_requests, kind)
            verdict: Verdict
            if setting == "deny":
                verdict = Deny(
                    f"server_requests.{kind}",
                    f'{method} from server "{self.policy.name}" is denied by the policy',
                )
            else:
                verdict = Allow(f"server_requests.{kind}")
            try:
                self._audit.write(
                    direction="s2c",
                    era=self.era,
                    method=method,
                    id=frame.id,
                    decision=verdict.decision,
                    rule=verdict.rule,
                    reason=verdict.reason or None,
                )
            except AuditError as exc:
                verdict = Deny("audit.unavailable", f"the audit log cannot be written: {exc}")
            if isinstance(verdict, Deny):
                return [("server", fr.error_response(frame.id, fr.DENIED, verdict.reason))]
            if setting == "policy":
                return [("server", fr.result_response(frame.id, dict(self._roots)))]
        try:
            msg = fr.loads_strict(frame.raw)
        except StrictJSONError as exc:
            return [
                (
                    "server",
                    fr.error_response(
                        frame.id, fr.INVALID_REQUEST, f"refused by the gateway: {exc}"
                    ),
                )
            ]
        # The prompts of sampling and elicitation requests are server data like any other.
        _, refusal = self._check_content(msg, method)
        if refusal is not None:
            self._audit_denial("s2c", method, frame.id, refusal)
            return [("server", fr.error_response(frame.id, fr.DENIED, refusal.reason))]
        ours = f"{RESERVED_ID_PREFIX}s-{next(self._ids)}"
        self._remapped[ours] = (frame.id, method)
        self._server_ids[frame.id] = ours
        msg["id"] = ours
        return [("client", fr.encode(msg))]

    def _check_content(self, msg: dict[str, Any], method: str | None) -> tuple[bool, Deny | None]:
        """Redact and check a server request or notification in place.

        Returns whether it changed, and the refusal when ``injection: block`` stops it.
        """
        if not self._content.active:
            return False, None
        outcome = self._content.message(msg, method)
        found = {**outcome.redactions, **outcome.flags}
        if found:
            self._outcomes.append(
                {
                    "direction": "s2c",
                    "era": self.era,
                    "method": method,
                    "decision": "redact" if outcome.redactions else "flag",
                    "findings": found,
                }
            )
        refusal = Deny(*outcome.refusal) if outcome.refusal is not None else None
        return outcome.changed, refusal
