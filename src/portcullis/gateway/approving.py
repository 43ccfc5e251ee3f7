"""Calls that wait for a person: the session's side of ``confirm``.

A call the policy marks ``confirm`` is kept by the session while the channels of
``approvals.channels`` are tried in order: out-of-band ones (the console queue, the terminal)
through the :class:`~portcullis.approval.broker.Broker`, and elicitation through the client
itself. An unavailable channel, or one nobody answered within ``approvals.timeout_s``, passes
the question to the next; a person's "no" ends it. Only an approval forwards the call, and only
the exact call that was shown. Outcomes from other threads come back through ``wake``, which
the transport runs under its lock.

Elicitation differs by era. Legacy: the gateway sends its own ``elicitation/create`` (an id in
its reserved namespace) and keeps the call. 2026-07-28: it answers the call with an
``input_required`` result whose ``requestState`` it seals; the client's retry is verified and
stripped of the gateway's keys before it is forwarded. When the server then runs rounds of its
own, its ``requestState`` travels inside a new seal that remembers the approval.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Final

import msgspec

from portcullis._exceptions import AuditError
from portcullis.approval.broker import Broker
from portcullis.approval.request import ApprovalRequest, Outcome, Ticket, binding_digest
from portcullis.approval.seal import Sealer, SealError
from portcullis.gateway import frames as fr
from portcullis.gateway.frames import Frame
from portcullis.gateway.methods import SUBJECT_FIELD
from portcullis.gateway.pipeline import Confirm
from portcullis.policy.compiled import ServerPolicy

__all__ = ["GATEWAY_KEY", "ApprovalFlow", "Asking", "Call"]

# The gateway's key in a 2026 result's inputRequests (and the retry's inputResponses); servers
# choose their own keys, and "portcullis." is not one a server has a reason to use.
GATEWAY_KEY: Final = "portcullis.approval"
_CAPS_KEY: Final = "io.modelcontextprotocol/clientCapabilities"
_ELICIT_IDS: Final = "portcullis-gw-"
_MRTR_METHODS: Final = ("tools/call", "prompts/get", "resources/read")
_ARGUMENTS: Final = ("tools/call", "prompts/get")

Wake = Callable[[Callable[[], list[Any]]], None]


class Call(msgspec.Struct):
    """A request that needs a person's approval, as the client sent it."""

    frame: Frame
    msg: dict[str, Any]
    params: dict[str, Any]
    method: str  # tools/call, prompts/get, resources/read or resources/subscribe
    subject: str  # the tool, prompt or URI
    observed: dict[str, Any] | None = None  # observe mode: what the argument guards examined

    @property
    def args(self) -> Any:
        """The arguments an approval is bound to (None for resources)."""
        return self.params.get("arguments") if self.method in _ARGUMENTS else None


class Asking(msgspec.Struct):
    """A call kept while a person is asked."""

    call: Call
    verdict: Confirm
    request: ApprovalRequest
    index: int = 0  # position in approvals.channels
    token: int = 0  # tells a current answer from a stale one
    channel: str = ""
    ticket: Any = None  # Ticket of the current out-of-band question, or the elicitation timer
    elicit_id: str | None = None
    skipped: list[str] = msgspec.field(default_factory=list)
    timed_out: list[str] = msgspec.field(default_factory=list)


def form_elicitation(capabilities: Any) -> bool:
    """Whether client capabilities declare form-mode elicitation (``{}`` means form)."""
    caps = capabilities.get("elicitation") if isinstance(capabilities, dict) else None
    return isinstance(caps, dict) and ("form" in caps or "url" not in caps)


def elicitation_outcome(answer: Any, *, session_ok: bool) -> Outcome:
    """The outcome an answer to the gateway's approval question stands for."""
    if not isinstance(answer, dict):
        return Outcome("denied", "elicitation", "client", "the client's answer was malformed")
    action, content = answer.get("action"), answer.get("content")
    if action == "accept" and isinstance(content, dict) and content.get("approve") is True:
        session = session_ok and content.get("for_session") is True
        return Outcome("approved", "elicitation", "client", for_session=session)
    if action == "accept":
        return Outcome("denied", "elicitation", "client", "the user answered no")
    if action == "decline":
        return Outcome("denied", "elicitation", "client", "the user declined")
    if action == "cancel":
        return Outcome("cancelled", "elicitation", "client", "the user dismissed the question")
    return Outcome("denied", "elicitation", "client", f"unknown elicitation action {action!r}")


def _schema(session_ok: bool) -> dict[str, Any]:
    props: dict[str, Any] = {
        "approve": {
            "type": "boolean",
            "title": "Approve this call",
            "description": "Portcullis forwards the call only if this is checked.",
            "default": False,
        }
    }
    if session_ok:
        props["for_session"] = {
            "type": "boolean",
            "title": "Also approve later calls of it in this session",
            "default": False,
        }
    return {"type": "object", "properties": props, "required": ["approve"]}


def _question(request: ApprovalRequest, era: str) -> dict[str, Any]:
    params: dict[str, Any] = {
        "message": f"Portcullis asks you to approve this call.\n\n{request.summary()}",
        "requestedSchema": _schema(request.session_ok),
    }
    if era != "legacy":
        params = {"mode": "form", **params}
    return params


class ApprovalFlow:
    """The approval part of the session; mixed into it, which provides the rest."""

    policy: ServerPolicy
    era: str
    principal: str
    wake: Wake
    _broker: Broker
    _sealer: Sealer | None
    _asking: dict[Any, Asking]
    _eliciting: dict[str, Any]  # our elicitation id -> the client id of the call
    _remembered: dict[tuple[str, str], Outcome]
    _client_elicits: bool
    _ids: Iterator[int]
    _log: Callable[[str], None]

    def _audit_write(self, **fields: Any) -> None:
        raise NotImplementedError

    def _audit_args(self, args: Any) -> Any:
        raise NotImplementedError

    def _forward(
        self,
        frame: Frame,
        msg: dict[str, Any],
        params: dict[str, Any],
        method: str,
        subject: str,
        rule: str,
        *,
        changed: bool = False,
        approval: tuple[Outcome, str] | None = None,
    ) -> list[Any]:
        raise NotImplementedError

    def _refusal_bytes(
        self, rid: Any, method: str, reason: str, rule: str, advice: str | None = None
    ) -> bytes:
        raise NotImplementedError

    def _session_ok(self, method: str, subject: str) -> bool:
        raise NotImplementedError

    # -- entering ---------------------------------------------------------------------------

    def _confirm(self, call: Call, verdict: Confirm) -> list[Any]:
        """Start asking for a call the policy marks ``confirm``."""
        if self._sealer is not None and Sealer.is_ours(call.params.get("requestState")):
            return self._retry(call, verdict)
        remembered = self._remembered.get((call.method, call.subject))
        if remembered is not None:
            return self._conclude(call, verdict.rule, remembered)
        from portcullis.approval.request import new_request

        request = new_request(
            self.policy.name,
            call.method,
            call.subject,
            call.args,
            timeout_s=self._broker.timeout_s,
            session_ok=self._session_ok(call.method, call.subject),
            reason=verdict.reason,
            rule=verdict.rule,
        )
        ask = Asking(call, verdict, request)
        self._asking[call.frame.id] = ask
        return self._next_channel(ask)

    def _next_channel(self, ask: Asking) -> list[Any]:
        order = self._broker.order
        while ask.index < len(order):
            name = order[ask.index]
            # Unique across the session: an answer meant for an earlier call that used the same
            # client id can never be taken for this one.
            ask.token = next(self._ids)
            ask.channel = name
            if name == "elicitation":
                why, out = self._elicit(ask)
                if why is None:
                    return out
            else:
                why = self._broker.unavailable(name)
                if why is None:
                    try:
                        ask.ticket = self._broker.ask(name, ask.request, self._waker(ask))
                        return []
                    except Exception as exc:  # a broken channel never approves
                        why = f"failed ({type(exc).__name__}: {exc})"
            ask.skipped.append(f"{name}: {why}")
            ask.index += 1
        if ask.timed_out:
            outcome = Outcome("timeout", ask.channel, reason="; ".join(ask.timed_out))
        elif not order:
            outcome = Outcome("unavailable", "none", reason="approvals.channels is empty")
        else:
            outcome = Outcome("unavailable", "none", reason="; ".join(ask.skipped))
        return self._finish(ask, outcome)

    def _waker(self, ask: Asking) -> Callable[[Outcome], None]:
        cid, token = ask.call.frame.id, ask.token
        return lambda outcome: self.wake(lambda: self._answered_safely(cid, token, outcome))

    def _answered_safely(self, cid: Any, token: int, outcome: Outcome) -> list[Any]:
        """:meth:`_answered`, failing closed: a bug refuses the call instead of losing it."""
        try:
            return self._answered(cid, token, outcome)
        except Exception as exc:
            ask = self._asking.pop(cid, None)
            self._log(f"internal error while handling an approval ({type(exc).__name__}: {exc})")
            if ask is None:
                return []
            reason = f"internal error in the gateway ({type(exc).__name__}: {exc})"
            refusal = self._refusal_bytes(cid, ask.call.method, reason, "internal-error")
            return [("client", refusal)]

    def _answered(self, cid: Any, token: int, outcome: Outcome) -> list[Any]:
        """An answer (or a timeout) from a channel; stale ones are ignored."""
        ask = self._asking.get(cid)
        if ask is None or ask.token != token:
            return []
        if outcome.outcome not in ("timeout", "unavailable"):
            return self._finish(ask, outcome)
        out = self._stop(ask)
        missed = ask.timed_out if outcome.outcome == "timeout" else ask.skipped
        missed.append(f"{ask.channel}: {outcome.reason}")
        ask.index += 1
        return out + self._next_channel(ask)

    # -- elicitation ------------------------------------------------------------------------

    def _elicit(self, ask: Asking) -> tuple[str | None, list[Any]]:
        if self.era == "legacy":
            if not self._client_elicits:
                return "the client did not declare form elicitation in initialize", []
            ours = f"{_ELICIT_IDS}{next(self._ids)}"
            self._eliciting[ours] = ask.call.frame.id
            ask.elicit_id = ours
            timeout = Outcome(
                "timeout",
                "elicitation",
                reason=f"no answer within {self._broker.timeout_s:g} s",
            )
            waker = self._waker(ask)
            ask.ticket = self._broker.after(self._broker.timeout_s, lambda: waker(timeout))
            request = {
                "jsonrpc": "2.0",
                "id": ours,
                "method": "elicitation/create",
                "params": _question(ask.request, self.era),
            }
            return None, [("client", fr.encode(request))]
        meta = ask.call.params.get("_meta")
        caps = meta.get(_CAPS_KEY) if isinstance(meta, dict) else None
        if not form_elicitation(caps):
            return "the client did not declare form elicitation in this request", []
        if ask.call.method not in _MRTR_METHODS:
            return f"{ask.call.method} cannot carry an input_required result", []
        if self._sealer is None:
            return "no install key to seal the request state with", []
        return None, self._ask_client(ask)

    def _ask_client(self, ask: Asking) -> list[Any]:
        """Answer a 2026 call with the gateway's question and a sealed state."""
        call = ask.call
        del self._asking[call.frame.id]
        assert self._sealer is not None
        responses = call.params.get("inputResponses")
        carry = (
            {k: v for k, v in responses.items() if k != GATEWAY_KEY}
            if isinstance(responses, dict)
            else None
        )
        state = self._sealer.seal(
            server=self.policy.name,
            principal=self.principal,
            method=call.method,
            subject=call.subject,
            digest=ask.request.digest,
            ttl_s=self._broker.timeout_s,
            inner=call.params.get("requestState"),
            carry=carry,
        )
        asked = Outcome("pending", "elicitation")
        try:
            self._record(call, ask.verdict.rule, asked)
        except AuditError as exc:
            return self._refuse_unaudited(call, exc)
        result = {
            "resultType": "input_required",
            "inputRequests": {
                GATEWAY_KEY: {
                    "method": "elicitation/create",
                    "params": _question(ask.request, self.era),
                }
            },
            "requestState": state,
        }
        return [("client", fr.result_response(call.frame.id, result))]

    def _elicited(self, frame: Frame, msg: dict[str, Any]) -> list[Any]:
        """The client answered the gateway's own (legacy) elicitation/create."""
        cid = self._eliciting.pop(str(frame.id))
        ask = self._asking.get(cid)
        if ask is None or ask.elicit_id != frame.id:
            return []
        token = ask.token
        if ask.ticket is not None:
            ask.ticket.withdraw()
        ask.ticket = ask.elicit_id = None
        if "error" in msg:
            error = msg.get("error")
            text = error.get("message") if isinstance(error, dict) else None
            why = f"the client answered with an error ({text or 'no message'})"
            return self._answered_safely(
                cid, token, Outcome("unavailable", "elicitation", reason=why)
            )
        outcome = elicitation_outcome(msg.get("result"), session_ok=ask.request.session_ok)
        return self._answered_safely(cid, token, outcome)

    def _retry(self, call: Call, verdict: Confirm) -> list[Any]:
        """A 2026 retry carrying the gateway's sealed state: verify, unwrap, decide."""
        assert self._sealer is not None
        params = call.params
        digest = binding_digest(self.policy.name, call.method, call.subject, call.args)
        try:
            body = self._sealer.open(
                str(params["requestState"]),
                server=self.policy.name,
                principal=self.principal,
                method=call.method,
                subject=call.subject,
                digest=digest,
            )
        except SealError as exc:
            refused = Outcome("denied", "elicitation", reason=str(exc))
            return self._conclude(call, "approval.state", refused)
        responses = params.get("inputResponses")
        responses = dict(responses) if isinstance(responses, dict) else {}
        if body.a:
            outcome = Outcome("approved", body.h or "elicitation", body.v, for_session=body.f)
        elif GATEWAY_KEY in responses:
            session_ok = self._session_ok(call.method, call.subject)
            outcome = elicitation_outcome(responses[GATEWAY_KEY], session_ok=session_ok)
        else:
            outcome = Outcome(
                "denied", "elicitation", reason="the retry carried no answer to the question"
            )
        # What goes on is the call as the server knows it: its own state and answers only.
        responses.pop(GATEWAY_KEY, None)
        responses = {**(body.c or {}), **responses}
        if responses:
            params["inputResponses"] = responses
        else:
            params.pop("inputResponses", None)
        if body.i is not None:
            params["requestState"] = body.i
        else:
            params.pop("requestState", None)
        return self._conclude(call, verdict.rule, outcome, changed=True, digest=digest)

    def _wrap_state(
        self, result: dict[str, Any], method: str, subject: str, approval: tuple[Outcome, str]
    ) -> None:
        """Keep an approval across the server's own 2026 rounds: seal its state inside ours."""
        outcome, digest = approval
        assert self._sealer is not None
        result["requestState"] = self._sealer.seal(
            server=self.policy.name,
            principal=self.principal,
            method=method,
            subject=subject,
            digest=digest,
            ttl_s=self._broker.timeout_s,
            approved=True,
            for_session=outcome.for_session,
            channel=outcome.channel,
            approver=outcome.approver,
            inner=result.get("requestState"),
        )

    # -- ending -----------------------------------------------------------------------------

    def _finish(self, ask: Asking, outcome: Outcome) -> list[Any]:
        self._asking.pop(ask.call.frame.id, None)
        out = self._stop(ask)
        return out + self._conclude(ask.call, ask.verdict.rule, outcome, digest=ask.request.digest)

    def _stop(self, ask: Asking) -> list[Any]:
        """Withdraw the current question; tell the client when it was an elicitation."""
        ticket: Ticket | None = ask.ticket
        ask.ticket = None
        if ticket is not None:
            ticket.withdraw()
        if ask.elicit_id is None:
            return []
        ours, ask.elicit_id = ask.elicit_id, None
        self._eliciting.pop(ours, None)
        note = {
            "jsonrpc": "2.0",
            "method": "notifications/cancelled",
            "params": {"requestId": ours, "reason": "the approval question was withdrawn"},
        }
        return [("client", fr.encode(note))]

    def _conclude(
        self,
        call: Call,
        rule: str,
        outcome: Outcome,
        *,
        changed: bool = False,
        digest: str | None = None,
    ) -> list[Any]:
        """Audit the outcome; forward an approved call, refuse any other."""
        reason = _reason(call.method, call.subject, outcome)
        try:
            self._record(call, rule, outcome)
        except AuditError as exc:
            return self._refuse_unaudited(call, exc)
        if not outcome.approved:
            advice = (
                "Do not retry it on your own; if it is needed, tell the user, who can approve "
                "it when it is asked again."
            )
            refusal = self._refusal_bytes(call.frame.id, call.method, reason, rule, advice)
            return [("client", refusal)]
        if outcome.for_session:
            self._remembered[(call.method, call.subject)] = outcome
        if digest is None:
            digest = binding_digest(self.policy.name, call.method, call.subject, call.args)
        return self._forward(
            call.frame,
            call.msg,
            call.params,
            call.method,
            call.subject,
            rule,
            changed=changed,
            approval=(outcome, digest),
        )

    def _record(self, call: Call, rule: str, outcome: Outcome) -> None:
        decided = outcome.approved or outcome.outcome == "pending"
        reason = outcome.reason or None if decided else _reason(call.method, call.subject, outcome)
        self._audit_write(
            direction="c2s",
            era=self.era,
            method=call.method,
            id=call.frame.id,
            **{SUBJECT_FIELD.get(call.method, "resource"): call.subject},
            args=self._audit_args(call.args) if call.args is not None else None,
            decision="confirm" if decided else "deny",
            rule=rule,
            reason=reason,
            approval=outcome.audit(),
            observed=call.observed,
        )

    def _refuse_unaudited(self, call: Call, exc: AuditError) -> list[Any]:
        reason = f"the audit log cannot be written, so calls are refused: {exc}"
        refusal = self._refusal_bytes(call.frame.id, call.method, reason, "audit.unavailable")
        return [("client", refusal)]

    def _withdraw(self, cid: Any) -> list[Any]:
        """The client cancelled a call that was waiting for a person."""
        ask = self._asking.pop(cid)
        out = self._stop(ask)
        outcome = Outcome("cancelled", ask.channel or "none", reason="cancelled by the client")
        try:
            self._record(ask.call, ask.verdict.rule, outcome)
        except AuditError as exc:
            self._log(f"audit log cannot be written: {exc}")
        return out  # a cancelled request gets no answer

    def _drop_all(self, why: str) -> list[Any]:
        """Withdraw every question (the session or the server ended); audit each call."""
        out: list[Any] = []
        for ask in list(self._asking.values()):
            out += self._stop(ask)
            try:
                outcome = Outcome("cancelled", ask.channel, reason=why)
                self._record(ask.call, ask.verdict.rule, outcome)
            except AuditError as exc:
                self._log(f"audit log cannot be written: {exc}")
        self._asking.clear()
        return out

    def close(self) -> None:
        """The session ends: withdraw every question and stop the channels."""
        self._drop_all("the session ended before anyone answered")
        self._broker.close()


def _reason(method: str, subject: str, outcome: Outcome) -> str:
    what = {"tools/call": "tool", "prompts/get": "prompt"}.get(method, "resource")
    asked = f'{what} "{subject}" needs a person\'s approval'
    why = f" ({outcome.reason})" if outcome.reason else ""
    who = f" by {outcome.approver}" if outcome.approver else ""
    if outcome.outcome == "approved":
        return f"{asked}: approved{who} on the {outcome.channel}"
    if outcome.outcome == "denied":
        return f"{asked}, and it was denied{who} on the {outcome.channel}{why}"
    if outcome.outcome == "cancelled":
        return f"{asked}, and the question was cancelled{why}"
    if outcome.outcome == "timeout":
        return f"{asked}, and nobody answered in time{why}"
    return f"{asked}, and no approval channel could reach a person{why}"
