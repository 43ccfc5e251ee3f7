"""One client↔server session: the relay's decisions, without any I/O.

``Session.from_client`` and ``Session.from_server`` take one frame and return the frames to send
on (to the client, to the server, or both). The transport does the reading and writing; this
class keeps the id tables, applies the policy, and writes the audit trail. It serves both
protocol eras: the legacy handshake (``initialize``; server→client requests) and 2026-07-28
(stateless requests carrying ``_meta``; ``input_required`` results instead of server requests).

Observe mode (``mode: observe``) runs every guard and audits every decision as enforce mode
would, with ``enforced: false`` on the ones it does not enforce, and the guards' inputs in an
``observed`` field; the request is forwarded anyway. Redaction, pins and approvals stay
enforced unless the policy's ``observe:`` block relaxes them; protected paths always are.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from itertools import count
from pathlib import PurePath
from typing import Any, Literal

import msgspec

from portcullis._exceptions import AuditError
from portcullis.approval.broker import Broker
from portcullis.approval.request import Outcome
from portcullis.approval.seal import Sealer
from portcullis.gateway import frames as fr
from portcullis.gateway.approving import ApprovalFlow, Asking, Call, Wake, form_elicitation
from portcullis.gateway.auditor import Auditor, observe_warning, observed_text
from portcullis.gateway.frames import Frame, FrameError, Oversize, StrictJSONError
from portcullis.gateway.guards.arguments import ENFORCED_IN_OBSERVE, ArgumentGuard, Examined
from portcullis.gateway.guards.content import ContentGuard
from portcullis.gateway.guards.pinning import PinGuard
from portcullis.gateway.guards.tools import IDENTITY_RULE, LayeredRules, RuleSet
from portcullis.gateway.methods import (
    HELLO,
    LIST_CHANGED,
    LIST_FILTERS,
    MODERN_KEY,
    RESERVED_ID_PREFIX,
    STRICT_DECODE_LIMIT,
    SUBJECT_FIELD,
)
from portcullis.gateway.pinned import Held, PinnedCalls
from portcullis.gateway.pipeline import Confirm, Deny, Verdict
from portcullis.gateway.server_requests import ServerRequests
from portcullis.policy.compiled import ServerPolicy

__all__ = ["RESERVED_ID_PREFIX", "Auditor", "Dest", "Out", "Session", "observe_warning"]

Dest = Literal["client", "server"]
Out = tuple[Dest, bytes]
Era = Literal["legacy", "2026-07-28"]
_OBSERVED_METHODS = ("tools/call", "prompts/get", "resources/read")
# Built-in protections, not policy decisions: observe mode enforces them like enforce mode
# (DESIGN §4: the policy file, the state directory and client configurations, always denied).
_ALWAYS_ENFORCED = ENFORCED_IN_OBSERVE


class _Pending(msgspec.Struct):
    method: str
    t0: float
    tool: str | None = None
    rule: str | None = None
    cursor: bool = False  # a list request for a later page
    approval: tuple[Outcome, str] | None = None  # (how it was approved, argument digest)


class Session(ApprovalFlow, ServerRequests, PinnedCalls):
    """Relay state and policy decisions for one client and one upstream server."""

    def __init__(
        self,
        policy: ServerPolicy,
        auditor: Auditor,
        *,
        clock: Callable[[], float] = time.perf_counter,
        log: Callable[[str], None] | None = None,
        pins: PinGuard | None = None,
        arguments: ArgumentGuard | None = None,
        broker: Broker | None = None,
        sealer: Sealer | None = None,
        principal: str = "",
    ) -> None:
        self.policy = policy
        self.era: Era = "legacy"
        self.observe = policy.mode == "observe"
        relaxed = policy.observe.relaxed() if self.observe else ()
        self._relax_pins = "pins" in relaxed
        self._relax_approvals = "approvals" in relaxed
        # Observe mode keeping pins: a withheld definition is refused even when a rule would
        # (not enforced) deny the call too, so the pins are checked whatever the rules say.
        self._pins_first = self.observe and not self._relax_pins
        self._examined: dict[str, Any] | None = None  # observe mode: the last request's
        self._audit = auditor
        self._clock = clock
        self._log = log or (lambda text: print(f"portcullis: {text}", file=sys.stderr))
        self._tools: RuleSet | LayeredRules = RuleSet(policy.tools, "tool", policy.name)
        self._prompts = RuleSet(policy.prompts, "prompt", policy.name)
        self._resources = RuleSet(policy.resources, "resource", policy.name)
        self._pending: dict[Any, _Pending] = {}
        self._remapped: dict[str, tuple[Any, str]] = {}  # our id -> (server's id, method)
        self._server_ids: dict[Any, str] = {}  # server's id -> our id
        self._ids = count(1)
        self._roots_keys: dict[tuple[str, str], set[str]] = {}
        self._outcomes: list[dict[str, Any]] = []
        # What roots/list is answered with when the policy answers it.
        roots = [{"uri": PurePath(r).as_uri(), "name": PurePath(r).name or r} for r in policy.roots]
        self._roots = {"roots": roots}
        self._output_schemas: dict[str, bool] = {}  # tool -> declares an outputSchema
        self._content = ContentGuard(
            policy.redact, policy.injection, count_only=self.observe and "redaction" in relaxed
        )
        self._pins = pins
        self._arguments = arguments
        self._input_schemas: dict[str, Any] = {}  # tool -> inputSchema, from tools/list
        self._held: dict[Any, Held] = {}  # client id -> call waiting for the gateway's listing
        self._own: dict[str, str | None] = {}  # our tools/list id -> the cursor it asked for
        self._own_pages = 0
        # Approvals: without a broker no channel is set up, and confirm calls are refused.
        self._broker = broker or Broker({}, 120.0)
        self._sealer = sealer
        self.principal = principal
        self.wake: Wake = self._no_wake
        self._asking: dict[Any, Asking] = {}
        self._eliciting: dict[str, Any] = {}
        self._remembered: dict[tuple[str, str], Outcome] = {}
        self._client_elicits = False
        self._inspect: dict[str, Callable[[Frame, dict[str, Any]], list[Out]]] = {
            "initialize": self._initialize,
            "tools/call": self._tools_call,
            "prompts/get": self._named_request,
            "resources/read": self._named_request,
            "resources/subscribe": self._named_request,
            "resources/unsubscribe": self._named_request,
            "completion/complete": self._completion,
        }

    def restrict(self, tools: list[RuleSet]) -> None:
        """Add a principal's tool rules on top of the server's (``serve``): deny wins."""
        if tools:
            base = self._tools.base if isinstance(self._tools, LayeredRules) else self._tools
            self._tools = LayeredRules(base, tools)

    def prepare(self) -> None:
        """Load the detectors the policy needs; safe to call from another thread, once or more."""
        self._content.prepare()
        if self._pins is not None:
            from portcullis.detect.injection import scan_definition  # noqa: F401 - warm it

    # -- client → server --------------------------------------------------------------------

    def from_client(self, raw: bytes) -> list[Out]:
        """Handle one frame from the client; a bug in a guard refuses the message (fail closed)."""
        try:
            return self._from_client(raw)
        except Exception as exc:  # any guard failure must become a refusal
            return self._internal_error("client", raw, exc)

    def from_server(self, raw: bytes) -> list[Out]:
        """Handle one frame from the server; a bug in a guard withholds the message."""
        try:
            return self._from_server(raw)
        except Exception as exc:  # any guard failure must become a refusal
            return self._internal_error("server", raw, exc)

    def _internal_error(self, side: Dest, raw: bytes, exc: Exception) -> list[Out]:
        reason = f"internal error in the gateway ({type(exc).__name__}: {exc})"
        self._log(f"{reason} while handling a {side} message; it was not forwarded")
        try:
            return self._refuse_after_error(side, raw, reason)
        except Exception:  # the message is dropped; the relay must go on
            return []

    def _refuse_after_error(self, side: Dest, raw: bytes, reason: str) -> list[Out]:
        try:
            frame = fr.decode_frame(raw)
        except FrameError:
            return []
        verdict = Deny("internal-error", reason)
        if side == "client" and frame.kind == "request":
            return self._refuse(frame, verdict)
        if side == "server" and frame.kind == "response":
            pending = self._pending.pop(frame.id, None)
            if pending is not None:
                self._audit_denial("s2c", pending.method, frame.id, verdict)
                data = self._refusal_bytes(frame.id, pending.method, reason, verdict.rule)
                return [("client", data)]
        if side == "server" and frame.kind == "request":
            return [("server", fr.error_response(frame.id, fr.INTERNAL_ERROR, reason))]
        return []

    def _from_client(self, raw: bytes) -> list[Out]:
        try:
            frame = fr.decode_frame(raw)
        except FrameError as exc:
            return [("client", fr.error_response(exc.id, exc.code, str(exc)))]
        # Every client frame is decoded strictly, not only the inspected ones: with a duplicated
        # "method" the envelope decoder (last one wins) and a server that keeps the first one
        # would disagree about what the message is.
        try:
            msg = fr.loads_strict(raw)
        except StrictJSONError as exc:
            if frame.kind == "request":
                reason = f"the request was refused because it is ambiguous: {exc}"
                return self._refuse(frame, Deny("protocol.strict-json", reason))
            self._log(f"dropped an ambiguous client {frame.kind}: {exc}")
            return []
        if frame.kind == "request":
            return self._client_request(frame, msg)
        if frame.kind == "notification":
            return self._client_notification(frame, msg)
        return self._client_response(frame, msg)

    def _client_request(self, frame: Frame, msg: dict[str, Any]) -> list[Out]:
        rid = frame.id
        if isinstance(rid, str) and rid.startswith(RESERVED_ID_PREFIX):
            return self._reply_error(
                rid,
                fr.INVALID_REQUEST,
                f'request ids starting with "{RESERVED_ID_PREFIX}" are reserved for the gateway',
            )
        if rid in self._pending or rid in self._held or rid in self._asking:
            return self._reply_error(
                rid, fr.INVALID_REQUEST, f"request id {rid!r} is already in flight"
            )
        self._detect_era(msg)
        method = frame.method or ""
        handler = self._inspect.get(method)
        if handler is None:
            params = msg.get("params")
            cursor = isinstance(params, dict) and params.get("cursor") is not None
            self._pending[rid] = _Pending(method, self._clock(), cursor=cursor)
            return [("server", frame.raw)]
        return handler(frame, msg)

    def _detect_era(self, msg: Any) -> None:
        # As a server would: only the request's own _meta says it is a 2026-07-28 request; the
        # same words inside a tool argument must not switch the era.
        params = msg.get("params") if isinstance(msg, dict) else None
        meta = params.get("_meta") if isinstance(params, dict) else None
        if isinstance(meta, dict) and MODERN_KEY in meta and msg.get("method") != "initialize":
            self.era = "2026-07-28"

    def _initialize(self, frame: Frame, msg: dict[str, Any]) -> list[Out]:
        self.era = "legacy"
        params = msg.get("params")
        caps = params.get("capabilities") if isinstance(params, dict) else None
        self._client_elicits = form_elicitation(caps)
        self._pending[frame.id] = _Pending("initialize", self._clock())
        return [("server", frame.raw)]

    def _tools_call(self, frame: Frame, msg: dict[str, Any]) -> list[Out]:
        params = msg.get("params")
        name = params.get("name") if isinstance(params, dict) else None
        if not isinstance(params, dict) or not isinstance(name, str):
            return self._reply_error(
                frame.id, fr.INVALID_PARAMS, 'tools/call needs params with a string "name"'
            )
        verdict = self._tools.decide(name)
        if not isinstance(verdict, Deny) or self.observe:
            verdict = self._with_arguments(verdict, "tools/call", name, params)
        if self._pins is not None and (not isinstance(verdict, Deny) or self._pins_first):
            state, reason = self._pins.status("tools", name)
            if state == "withheld":
                verdict = Deny("pin.withheld", reason)
        guarded = self._pins is not None or self._arguments is not None
        if self._lists(verdict) and guarded and self._unresolved(name):
            # Not listed in this session: the pins and the tool's input schema (which says
            # which arguments are paths) come from the gateway's own listing, before deciding.
            return self._hold(Held(frame, msg, params, name))
        return self._decide_call(frame, msg, params, name, verdict)

    def _decide_call(
        self, frame: Frame, msg: dict[str, Any], params: dict[str, Any], name: str, verdict: Verdict
    ) -> list[Out]:
        observed, self._examined = self._examined, None
        if isinstance(verdict, Confirm) and not self._relax_approvals:
            call = Call(frame, msg, params, "tools/call", name, observed=observed)
            return self._confirm(call, verdict)
        out = self._apply(frame, name, params.get("arguments"), verdict, observed)
        if out is not None:
            return out
        return self._forward(frame, msg, params, "tools/call", name, verdict.rule)

    def _named_request(self, frame: Frame, msg: dict[str, Any]) -> list[Out]:
        method = frame.method or ""
        params = msg.get("params")
        key = "name" if method == "prompts/get" else "uri"
        subject = params.get(key) if isinstance(params, dict) else None
        if not isinstance(params, dict) or not isinstance(subject, str):
            return self._reply_error(
                frame.id, fr.INVALID_PARAMS, f'{method} needs params with a string "{key}"'
            )
        rules = self._prompts if method == "prompts/get" else self._resources
        verdict = rules.decide(subject)
        if not isinstance(verdict, Deny) or self.observe:
            verdict = self._with_arguments(verdict, method, subject, params)
        if self._pins is not None and (not isinstance(verdict, Deny) or self._pins_first):
            # Prompts and resources listed with a changed definition stay refused; ones never
            # listed (resources are often read by URI without a listing) are not held.
            kind = "prompts" if method == "prompts/get" else "resources"
            state, reason = self._pins.status(kind, subject)
            if state == "withheld":
                verdict = Deny("pin.withheld", reason)
        observed, self._examined = self._examined, None
        if method not in _OBSERVED_METHODS:
            observed = None
        if isinstance(verdict, Confirm) and not self._relax_approvals:
            call = Call(frame, msg, params, method, subject, observed=observed)
            return self._confirm(call, verdict)
        args = params.get("arguments") if method == "prompts/get" else None
        out = self._apply(frame, subject, args, verdict, observed)
        if out is not None:
            return out
        return self._forward(frame, msg, params, method, subject, verdict.rule)

    def _completion(self, frame: Frame, msg: dict[str, Any]) -> list[Out]:
        params = msg.get("params")
        ref = params.get("ref") if isinstance(params, dict) else None
        if not isinstance(ref, dict):
            return self._reply_error(
                frame.id, fr.INVALID_PARAMS, 'completion/complete needs params with a "ref" object'
            )
        if ref.get("type") == "ref/prompt" and isinstance(ref.get("name"), str):
            subject, verdict = ref["name"], self._prompts.decide(ref["name"])
        elif ref.get("type") == "ref/resource" and isinstance(ref.get("uri"), str):
            subject, verdict = ref["uri"], self._resources.decide(ref["uri"])
            if not isinstance(verdict, Deny) or self.observe:
                verdict = self._with_arguments(verdict, "resources/read", subject, {})
        else:
            return self._reply_error(
                frame.id,
                fr.INVALID_PARAMS,
                "completion/complete ref must be ref/prompt with a name or ref/resource with a uri",
            )
        argument = params.get("argument") if isinstance(params, dict) else None
        if (
            (not isinstance(verdict, Deny) or self.observe)
            and self._arguments is not None
            and isinstance(argument, dict)
        ):
            # The value being completed is an argument like any other (a path, say); observe
            # mode checks it behind a denial too, as a protected path is refused there as well.
            named = {str(argument.get("name")): argument.get("value")}
            seen = Examined() if self.observe else None
            checked = self._arguments.check_call(subject, named, seen=seen)
            if isinstance(checked, Deny) and (
                not isinstance(verdict, Deny) or checked.rule in _ALWAYS_ENFORCED
            ):
                verdict = checked
        if isinstance(verdict, Confirm):
            # Completing an argument is not the call; it is not worth a person's approval.
            verdict = Deny(verdict.rule, f"{verdict.reason}: completions for it are not offered")
        self._examined = None  # completions carry no observed record
        out = self._apply(frame, subject, None, verdict)
        if out is not None:
            return out
        self._pending[frame.id] = _Pending("completion/complete", self._clock())
        return [("server", frame.raw)]

    def _check_arguments(self, method: str, subject: str, params: dict[str, Any]) -> Deny | None:
        """The argument guards' verdict on a request (paths, SQL, URLs, constraints).

        In observe mode what the guards examined is kept in ``_examined`` for the decision's
        audit record (the caller takes it before anything else can overwrite it).
        """
        self._examined = None
        if self._arguments is None:
            if self.observe and method == "resources/read":
                self._examined = {"inputs": {"uri": observed_text(subject)}}
            return None
        schema = self._input_schemas.get(subject) if method == "tools/call" else None
        if self.observe:
            verdict, seen = self._arguments.examine_request(method, subject, params, schema)
            self._examined = seen.record()
        else:
            verdict = self._arguments.check_request(method, subject, params, schema)
        return verdict if isinstance(verdict, Deny) else None

    def _with_arguments(
        self, verdict: Verdict, method: str, subject: str, params: dict[str, Any]
    ) -> Verdict:
        """``verdict`` (the name rules') combined with the argument guards': a denial wins.

        Observe mode runs the guards after a rule's denial too, so their inputs are recorded.
        """
        checked = self._check_arguments(method, subject, params)
        if checked is None:
            return verdict
        if isinstance(verdict, Confirm) and self._enforces(verdict) and not self._enforces(checked):
            # Observe mode keeping approvals: a would-be denial must not skip the person.
            why = f"{checked.reason} (not enforced: observe mode); {verdict.reason}"
            return Confirm(checked.rule, why)
        if not isinstance(verdict, Deny) or checked.rule in _ALWAYS_ENFORCED:
            return checked
        return verdict

    def _enforces(self, verdict: Verdict) -> bool:
        """Whether a deny or confirm verdict is enforced (observe mode: see the module doc)."""
        if not self.observe or verdict.rule in _ALWAYS_ENFORCED:
            return True
        if verdict.rule.startswith(IDENTITY_RULE):
            return True  # `serve`: who may call what is not part of what is being observed
        if verdict.rule.startswith("pin."):
            return not self._relax_pins
        return isinstance(verdict, Confirm) and not self._relax_approvals

    def _apply(
        self,
        frame: Frame,
        subject: str,
        args: Any,
        verdict: Verdict,
        observed: dict[str, Any] | None = None,
    ) -> list[Out] | None:
        """Audit a decision; return the refusal to send, or None to forward the request."""
        unenforced = isinstance(verdict, Deny | Confirm) and not self._enforces(verdict)
        if isinstance(verdict, Confirm) and not unenforced:  # not asked (a completion)
            verdict = Deny(verdict.rule, f"{verdict.reason}: it needs a person's approval")
        try:
            self._audit.write(
                direction="c2s",
                era=self.era,
                method=frame.method,
                id=frame.id,
                **{SUBJECT_FIELD.get(frame.method or "", "resource"): subject},
                args=self._audit.args(args) if args is not None else None,
                decision=verdict.decision,
                rule=verdict.rule,
                reason=verdict.reason,
                enforced=False if unenforced else None,
                observed=observed if self.observe else None,
            )
        except AuditError as exc:
            reason = f"the audit log cannot be written, so calls are refused: {exc}"
            return self._refuse(frame, Deny("audit.unavailable", reason), audit=False)
        if isinstance(verdict, Deny) and not unenforced:
            return self._refusal(frame, verdict.reason, verdict.rule)
        if unenforced:
            would = "deny" if isinstance(verdict, Deny) else "ask a person about"
            self._log(f"observe mode: would {would} {frame.method} {subject}: {verdict.reason}")
        return None

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
    ) -> list[Out]:
        self._pending[frame.id] = _Pending(method, self._clock(), subject, rule, approval=approval)
        raw = fr.encode(msg) if changed else frame.raw
        responses = params.get("inputResponses")
        keys = self._roots_keys.get((method, subject))
        if keys and isinstance(responses, dict):
            # A 2026 retry: the answers to the server's roots/list come from the policy, not the
            # client, whatever the client put there.
            for key in keys & responses.keys():
                responses[key] = dict(self._roots)
            raw = fr.encode(msg)
        return [("server", raw)]

    def _refuse(self, frame: Frame, verdict: Deny, *, audit: bool = True) -> list[Out]:
        if audit:
            self._audit_denial("c2s", frame.method, frame.id, verdict)
        return self._refusal(frame, verdict.reason, verdict.rule)

    def _audit_denial(
        self, direction: str, method: str | None, rid: Any, verdict: Deny, **extra: Any
    ) -> None:
        # The denial happens whether or not it can be recorded: refusing is already fail-closed.
        try:
            self._audit.write(
                direction=direction,
                era=self.era,
                method=method,
                id=rid,
                decision="deny",
                rule=verdict.rule,
                reason=verdict.reason,
                **extra,
            )
        except AuditError as exc:
            self._log(f"audit log cannot be written: {exc}")

    def _refusal(self, frame: Frame, reason: str, rule: str) -> list[Out]:
        return [("client", self._refusal_bytes(frame.id, frame.method or "", reason, rule))]

    def _refusal_bytes(
        self, rid: Any, method: str, reason: str, rule: str, advice: str | None = None
    ) -> bytes:
        """A refusal the model can read: an isError result for tools/call, else -31900."""
        if method == "tools/call":
            return fr.result_response(rid, self._error_result(reason, rule, advice))
        message = f"Portcullis refused this request: {reason}"
        return fr.error_response(rid, fr.DENIED, message, {"rule": rule})

    def _error_result(self, reason: str, rule: str, advice: str | None = None) -> dict[str, Any]:
        advice = advice or (
            "Do not retry it unchanged; if it is needed, ask the user to change the Portcullis "
            "policy."
        )
        text = f"Portcullis refused this call: {reason}. (rule {rule}) {advice}"
        result: dict[str, Any] = {"content": [{"type": "text", "text": text}], "isError": True}
        if self.era != "legacy":
            result["resultType"] = "complete"
        return result

    def _reply_error(self, rid: Any, code: int, message: str, data: Any = None) -> list[Out]:
        return [("client", fr.error_response(rid, code, message, data))]

    def _client_notification(self, frame: Frame, msg: dict[str, Any]) -> list[Out]:
        if frame.method in self._inspect:
            # A request method sent without an id cannot be refused with an answer, and a
            # server may still act on it: it is not forwarded.
            self._log(f"dropped {frame.method} sent as a notification (no id)")
            return []
        if frame.method == "notifications/cancelled":
            target = fr.cancelled_id(msg)
            if self._held.pop(target, None) is not None:
                return []  # held by the gateway: the server never saw it
            if target in self._asking:
                return self._withdraw(target)
            if target is None or self._pending.pop(target, None) is None:
                # Cancelling a request the server never saw (refused, answered, or unknown).
                return []
        return [("server", frame.raw)]

    def _client_response(self, frame: Frame, msg: dict[str, Any]) -> list[Out]:
        if frame.id in self._eliciting:
            return self._elicited(frame, msg)
        entry = self._remapped.pop(frame.id, None) if isinstance(frame.id, str) else None
        if entry is None:
            self._log(f"dropped a client response to unknown request id {frame.id!r}")
            return []
        server_id, _method = entry
        self._server_ids.pop(server_id, None)
        msg["id"] = server_id
        return [("server", fr.encode(msg))]

    # -- server → client --------------------------------------------------------------------

    def _from_server(self, raw: bytes) -> list[Out]:
        try:
            frame = fr.decode_frame(raw)
        except FrameError as exc:
            preview = raw[:200].decode("utf-8", "replace")
            self._log(f"upstream wrote a line that is not a JSON-RPC message ({exc}): {preview!r}")
            return []
        if frame.kind == "response":
            return self._server_response(frame)
        if frame.kind == "request":
            return self._server_request(frame)
        return self._server_notification(frame)

    def _server_response(self, frame: Frame) -> list[Out]:
        if frame.id in self._own:
            return self._own_listed(frame)
        pending = self._pending.get(frame.id)
        if pending is None:
            self._log(f"dropped a server response to unknown or cancelled request id {frame.id!r}")
            return []
        listing = None if frame.is_error else LIST_FILTERS.get(pending.method)
        if listing is not None and not self._can_hide(listing[2]):
            listing = None
        # An escaped spelling ("input\u005frequired") must not slip past the byte test.
        mrtr = (
            pending.tool is not None
            and not frame.is_error
            and (b"input_required" in frame.raw or b"\\u" in frame.raw)
        )
        hello = self._pins is not None and pending.method in HELLO and not frame.is_error
        raw = frame.raw
        found: dict[str, int] = {}
        decision = "allow"
        if listing is not None or mrtr or hello or self._content.active:
            try:
                msg, changed = self._decode_s2c(frame.raw)
            except StrictJSONError as exc:
                reason = f"the server's answer was refused because it is ambiguous: {exc}"
                raw = self._refusal_bytes(frame.id, pending.method, reason, "protocol.strict-json")
            else:
                refusal: Deny | None = None
                if listing is not None:
                    changed |= self._filter_items(msg, frame.id, pending, *listing)
                if mrtr:
                    refusal = self._input_required(msg, frame.id, pending)
                    if refusal is None and pending.approval is not None:
                        changed |= self._keep_approval(msg, pending)
                if hello:
                    changed |= self._check_server_pin(msg)
                if refusal is None and self._content.active:
                    outcome = self._content.message(
                        msg, pending.method, structured_schema=self._may_have_schema(pending)
                    )
                    changed |= outcome.changed
                    found = {**outcome.redactions, **outcome.flags}
                    decision = "redact" if outcome.redactions else "flag" if found else decision
                    if outcome.refusal is not None:
                        refusal = Deny(*outcome.refusal)
                if refusal is not None:
                    decision = "deny"
                    raw = self._refusal_bytes(
                        frame.id, pending.method, refusal.reason, refusal.rule
                    )
                elif changed:
                    raw = fr.encode(msg)
        # Only now: if a guard above failed, the request is still pending and gets a refusal.
        del self._pending[frame.id]
        if pending.method == "tools/call" or found:
            # The outcome record is written after the answer has gone to the client (see
            # after_send): it is off the call's round trip. The decision record, written before
            # the call was forwarded, is what makes a failing audit log refuse calls.
            self._outcomes.append(
                {
                    "direction": "s2c",
                    "era": self.era,
                    "method": pending.method,
                    "id": frame.id,
                    "tool": pending.tool if pending.method == "tools/call" else None,
                    "decision": decision,
                    "rule": pending.rule,
                    "findings": found or None,
                    "enforced": False
                    if decision == "redact" and self._content.count_only
                    else None,
                    "result_bytes": len(frame.raw),
                    "latency_ms": round((self._clock() - pending.t0) * 1000, 3),
                }
            )
        return [("client", raw)]

    def _decode_s2c(self, raw: bytes) -> tuple[dict[str, Any], bool]:
        """Decode a server message for inspection; the flag says it must be re-encoded."""
        if len(raw) <= STRICT_DECODE_LIMIT:
            msg = fr.loads_strict(raw)
            changed = False
        else:
            # Large: the fast decoder (a duplicate key: the last one wins), and the message is
            # always re-encoded, so the client receives exactly what was checked.
            msg = fr.loads_fast(raw)
            changed = True
        if not isinstance(msg, dict):
            raise StrictJSONError("not a JSON object")
        return msg, changed

    def _keep_approval(self, msg: dict[str, Any], pending: _Pending) -> bool:
        result = msg.get("result")
        if not isinstance(result, dict) or result.get("resultType") != "input_required":
            return False
        if self._sealer is None or pending.approval is None or pending.tool is None:
            return False
        self._wrap_state(result, pending.method, pending.tool, pending.approval)
        return True

    def _may_have_schema(self, pending: _Pending) -> bool:
        return pending.tool is None or self._output_schemas.get(pending.tool, True)

    def after_send(self) -> None:
        """Write the outcome records of results just delivered; call after sending them."""
        while self._outcomes:
            record = self._outcomes.pop(0)
            try:
                self._audit.write(**record)
            except AuditError as exc:
                self._log(f"audit log cannot be written ({exc}); further calls will be refused")

    def _rules_for(self, subject: str) -> RuleSet | LayeredRules:
        return {"tool": self._tools, "prompt": self._prompts}.get(subject, self._resources)

    def _server_notification(self, frame: Frame) -> list[Out]:
        stale = LIST_CHANGED.get(frame.method or "")
        if stale is not None and self._pins is not None:
            # Verified definitions are checked again: by the client's next listing, or by the
            # gateway's own before the next call.
            for kind in stale:
                self._pins.invalidate(kind)
        if frame.method == "notifications/cancelled":
            try:
                msg = fr.loads_strict(frame.raw)
            except StrictJSONError:
                return []
            target = fr.cancelled_id(msg)
            ours = self._server_ids.pop(target, None) if target is not None else None
            if ours is None:
                return []  # a request the gateway answered itself, or never saw
            self._remapped.pop(ours, None)
            msg["params"]["requestId"] = ours
            return [("client", fr.encode(msg))]
        if not self._content.active:
            return [("client", frame.raw)]
        try:
            msg, changed = self._decode_s2c(frame.raw)
        except StrictJSONError as exc:
            self._log(f"dropped an ambiguous server notification: {exc}")
            return []
        rewritten, refusal = self._check_content(msg, frame.method)
        if refusal is not None:
            self._audit_denial("s2c", frame.method, None, refusal)
            self._log(f"dropped a server {frame.method}: {refusal.reason}")
            return []
        if rewritten or changed:
            return [("client", fr.encode(msg))]
        return [("client", frame.raw)]

    # -- the edges ------------------------------------------------------------------------

    def oversize(self, side: Dest, over: Oversize) -> list[Out]:
        """A frame over ``max_message_bytes`` arrived from ``side`` and was discarded."""
        limit = self.policy.max_message_bytes
        rid = fr.guess_id(over.head, over.tail)
        origin = "client's message" if side == "client" else "server's response"
        reason = (
            f"the {origin} was {over.size} bytes, over max_message_bytes ({limit}) of "
            f'server "{self.policy.name}"'
        )
        self._log(reason)
        direction = "c2s" if side == "client" else "s2c"
        size = over.size if side == "server" else None
        verdict = Deny("max_message_bytes", reason)
        self._audit_denial(direction, None, rid, verdict, result_bytes=size)
        if side == "client":
            return self._reply_error(rid, fr.TOO_LARGE, f"message too large: {reason}")
        if isinstance(rid, str) and rid in self._own:
            return self._release(f"the server's tools/list was too large: {reason}")
        if rid is None or self._pending.pop(rid, None) is None:
            return []
        return self._reply_error(rid, fr.TOO_LARGE, f"result too large: {reason}")

    def upstream_gone(self, status: int | None) -> list[Out]:
        """The server exited: answer every request it still owed."""
        how = "exited" if status is None else f"exited with status {status}"
        out: list[Out] = [
            (
                "client",
                fr.error_response(
                    rid,
                    fr.UPSTREAM_GONE,
                    f'the MCP server "{self.policy.name}" {how} before answering {p.method}',
                ),
            )
            for rid, p in [
                *self._pending.items(),
                *((rid, _Pending("tools/call", 0.0)) for rid in self._held),
                *((rid, _Pending(a.call.method, 0.0)) for rid, a in self._asking.items()),
            ]
        ]
        self._pending.clear()
        self._held.clear()
        return out + self._drop_all("the server exited")

    def launched(self, pid: int) -> None:
        """The transport started the MCP server: what it starts may never approve a call."""
        self._broker.launched(pid)

    # -- what the approval flow needs ---------------------------------------------------------

    def _audit_write(self, **fields: Any) -> None:
        self._audit.write(**fields)

    def _audit_args(self, args: Any) -> Any:
        return self._audit.args(args)

    def _session_ok(self, method: str, subject: str) -> bool:
        rules = (
            self._tools
            if method == "tools/call"
            else self._rules_for("prompt" if method == "prompts/get" else "resource")
        )
        return rules.remembers(subject)

    def _no_wake(self, fn: Callable[[], list[Out]]) -> None:
        # No transport set ``wake``: an answer that cannot be delivered must not vanish quietly.
        self._log("an approval outcome arrived but no transport can deliver it; it was dropped")
