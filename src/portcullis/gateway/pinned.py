"""List results and calls checked against the rules and the pins.

A list result (``tools/list``, ``prompts/list`` …) loses the entries the rules refuse and the
definitions the pins withhold, and the audit says how many.

A ``tools/call`` for a tool the session has not seen listed (a client that calls without
listing, a gateway restarted since, or a ``list_changed`` in between) is held while the gateway
lists the server's tools itself, under its own request ids; then it is forwarded or refused.
This is the part of :class:`~portcullis.gateway.session.Session` that does it.

Observe mode keeps the pins unless ``observe: {pins: relax}``: kept, a withheld definition is
hidden and calls to it refused whatever the (unenforced) rules say; relaxed, it is listed and
called, and audited as a would-be denial (``enforced: false``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Final

import msgspec

from portcullis._exceptions import AuditError
from portcullis.gateway import frames as fr
from portcullis.gateway.auditor import Auditor
from portcullis.gateway.frames import Frame, StrictJSONError
from portcullis.gateway.guards.content import poisoned
from portcullis.gateway.guards.pinning import PinGuard
from portcullis.gateway.guards.tools import IDENTITY_RULE, LayeredRules, RuleSet
from portcullis.gateway.methods import MODERN_KEY
from portcullis.gateway.pipeline import Deny, Verdict
from portcullis.pins.compare import KEY_FIELDS, SERVER_KEY
from portcullis.policy.compiled import ServerPolicy

__all__ = ["Held", "PinnedCalls"]

_GATEWAY_IDS: Final = "portcullis-gw-"
_SUBJECT: Final = {"tools": "tool", "prompts": "prompt"}
_MAX_OWN_PAGES: Final = 100  # a server that pages forever must not hold calls forever


class Held(msgspec.Struct):
    """A tools/call waiting for the gateway's own listing of the server's tools."""

    frame: Frame
    msg: dict[str, Any]
    params: dict[str, Any]
    name: str


class PinnedCalls:
    """Pin checks and held calls; mixed into the session, which provides the rest."""

    policy: ServerPolicy
    _pins: PinGuard | None
    _held: dict[Any, Held]
    _own: dict[str, str | None]
    _ids: Iterator[int]
    _tools: RuleSet | LayeredRules
    _log: Callable[[str], None]
    _input_schemas: dict[str, Any]
    _output_schemas: dict[str, bool]
    _own_pages: int
    _audit: Auditor
    era: str
    observe: bool
    _relax_pins: bool
    _pins_first: bool

    def _with_arguments(
        self, verdict: Verdict, method: str, subject: str, params: dict[str, Any]
    ) -> Verdict:
        raise NotImplementedError

    def _decode_s2c(self, raw: bytes) -> tuple[dict[str, Any], bool]:
        raise NotImplementedError

    def _decide_call(
        self,
        frame: Frame,
        msg: dict[str, Any],
        params: dict[str, Any],
        name: str,
        verdict: Verdict,
    ) -> list[Any]:
        raise NotImplementedError

    def _audit_denial(
        self, direction: str, method: str | None, rid: Any, verdict: Deny, **extra: Any
    ) -> None:
        raise NotImplementedError

    def _rules_for(self, subject: str) -> RuleSet | LayeredRules:
        raise NotImplementedError

    def _enforces(self, verdict: Verdict) -> bool:
        raise NotImplementedError

    def _lists(self, verdict: Verdict) -> bool:
        """Whether a list result shows an entry the rules decided ``verdict`` for."""
        return not isinstance(verdict, Deny) or not self._enforces(verdict)

    # -- list results -----------------------------------------------------------------------

    def _can_hide(self, subject: str) -> bool:
        rules = self._rules_for(subject).rules
        # Tool lists are always read: they say which tools declare an outputSchema.
        return (
            rules.default == "deny"
            or bool(rules.deny)
            or subject == "tool"
            or self._pins is not None
        )

    def _filter_items(
        self, msg: dict[str, Any], rid: Any, pending: Any, key: str, field: str, subject: str
    ) -> bool:
        """Hide the entries of a list result that the policy refuses; True when any was."""
        result = msg.get("result")
        items = result.get(key) if isinstance(result, dict) else None
        if not isinstance(items, list):
            return False
        rules = self._rules_for(subject)
        kept: list[Any] = []
        hidden: dict[str, int] = {}
        for item in items:
            name = item.get(field) if isinstance(item, dict) else None
            verdict = (
                rules.decide(name)
                if isinstance(name, str)
                else Deny("protocol.malformed", f"a {subject} entry without a string {field}")
            )
            if isinstance(verdict, Deny):
                hidden[verdict.rule] = hidden.get(verdict.rule, 0) + 1
                if not self._lists(verdict):
                    continue
            if subject == "tool" and isinstance(name, str):
                self._output_schemas[name] = "outputSchema" in item
                self._input_schemas[name] = item.get("inputSchema")
            kept.append(item)
        if self._pins is not None:
            following = result.get("nextCursor") if isinstance(result, dict) else None
            before = len(kept)
            kept = self._check_pins(
                key, kept, paged=pending.cursor or bool(following), last=not following
            )
            if len(kept) != before:
                hidden["pin.withheld"] = before - len(kept)
        if self.observe:
            # Observed, not enforced: entries the rules refuse stay listed (pins kept still
            # hide theirs); the record says what the policy would have hidden.
            enforced = {k: n for k, n in hidden.items() if k.startswith(("pin.", IDENTITY_RULE))}
            observed = {k: n for k, n in hidden.items() if k not in enforced}
            self._observe_list(rid, pending.method, subject, kept, observed)
            hidden = enforced
        if not hidden:
            return False
        assert isinstance(result, dict)
        result[key] = kept
        try:
            self._audit.write(
                direction="s2c",
                era=self.era,
                method=pending.method,
                id=rid,
                decision="allow",
                rule=f"{subject}s.filter",
                reason=f"{sum(hidden.values())} {subject} entries hidden by policy",
                findings=hidden,
            )
        except AuditError as exc:
            raise AuditError(f"the audit log cannot be written: {exc}") from exc
        return True

    def _observe_list(
        self, rid: Any, method: str, subject: str, kept: list[Any], hidden: dict[str, int]
    ) -> None:
        """Observe mode: audit a list result (tools with their annotations and schemas)."""
        try:
            self._audit.observed_list(self.era, rid, method, subject, kept, hidden)
        except AuditError as exc:
            raise AuditError(f"the audit log cannot be written: {exc}") from exc

    # -- held calls -------------------------------------------------------------------------

    def _hold(self, held: Held) -> list[Any]:
        first = not self._held
        self._held[held.frame.id] = held
        if not first and self._own:
            return []  # a listing is already on its way
        return [("server", self._own_list(None, held.params))]

    def _own_list(self, cursor: str | None, like: dict[str, Any]) -> bytes:
        ours = f"{_GATEWAY_IDS}{next(self._ids)}"
        self._own[ours] = cursor
        params: dict[str, Any] = {}
        if cursor is not None:
            params["cursor"] = cursor
        meta = like.get("_meta")
        if isinstance(meta, dict) and MODERN_KEY in meta:
            # 2026-07-28 requests carry the client's version and capabilities in every request.
            params["_meta"] = {k: v for k, v in meta.items() if k != "progressToken"}
        return fr.encode({"jsonrpc": "2.0", "id": ours, "method": "tools/list", "params": params})

    def _own_listed(self, frame: Frame) -> list[Any]:
        """The server answered the gateway's own tools/list: check it, release held calls."""
        cursor = self._own.pop(frame.id)
        try:
            msg, _ = self._decode_s2c(frame.raw)
        except StrictJSONError as exc:
            return self._release(f"the server's tools/list was ambiguous: {exc}")
        result = msg.get("result")
        tools = result.get("tools") if isinstance(result, dict) else None
        if frame.is_error or not isinstance(tools, list):
            return self._release("the server did not answer the gateway's tools/list")
        assert isinstance(result, dict)
        following = result.get("nextCursor")
        for tool in tools:
            name = tool.get("name") if isinstance(tool, dict) else None
            if isinstance(name, str):
                self._input_schemas[name] = tool.get("inputSchema")
                self._output_schemas[name] = "outputSchema" in tool
        if self._pins is not None:
            # Tools the rules refuse are never shown, so they are neither pinned nor pending
            # (in observe mode they are shown, so they are pinned like the rest).
            shown = [
                t
                for t in tools
                if isinstance(t, dict) and self._lists(self._tools.decide(str(t.get("name"))))
            ]
            self._check_pins(
                "tools", shown, paged=cursor is not None or bool(following), last=not following
            )
        waiting = [h for h in self._held.values() if self._unresolved(h.name)]
        if isinstance(following, str) and waiting:
            self._own_pages += 1
            if self._own_pages > _MAX_OWN_PAGES:
                return self._release(f"the server's tools/list ran past {_MAX_OWN_PAGES} pages")
            return [("server", self._own_list(following, waiting[0].params))]
        return self._release(None)

    def _unresolved(self, name: str) -> bool:
        """Whether a call to ``name`` must wait for the gateway's own listing."""
        if self._pins is not None and self._pins.status("tools", name)[0] == "unknown":
            return True
        return name not in self._input_schemas

    def _release(self, failure: str | None) -> list[Any]:
        held, self._held = self._held, {}
        self._own.clear()
        self._own_pages = 0
        out: list[Any] = []
        for call in held.values():
            state, reason = (
                ("ok", "") if self._pins is None else self._pins.status("tools", call.name)
            )
            verdict: Verdict = self._tools.decide(call.name)
            if not isinstance(verdict, Deny) or self.observe:
                # Now with the tool's input schema: arguments it describes as paths count.
                verdict = self._with_arguments(verdict, "tools/call", call.name, call.params)
            if (isinstance(verdict, Deny) and not self._pins_first) or self._pins is None:
                pass  # without pins, the listing only lent the schema (best effort)
            elif failure is not None:
                verdict = Deny(
                    "pin.unverified",
                    f'tool "{call.name}" could not be checked against the pins: {failure}',
                )
            elif state == "withheld":
                verdict = Deny("pin.withheld", reason)
            elif state == "unknown":
                verdict = Deny(
                    "pin.unlisted",
                    f'tool "{call.name}" is not in the tools/list of '
                    f'server "{self.policy.name}", so it cannot be checked against '
                    "the pins",
                )
            out += self._decide_call(call.frame, call.msg, call.params, call.name, verdict)
        return out

    def _check_server_pin(self, msg: dict[str, Any]) -> bool:
        """Withhold the server's instructions when its identity differs from the pinned one."""
        result = msg.get("result")
        if not isinstance(result, dict):
            return False
        if self._check_pins(SERVER_KEY, [result], paged=False, last=True):
            return False
        return result.pop("instructions", None) is not None

    def _check_pins(self, kind: str, items: list[Any], *, paged: bool, last: bool) -> list[Any]:
        """Withhold what does not match the pins; audit and log what was withheld."""
        assert self._pins is not None
        hold = {key for key, item in _keyed_items(kind, items) if poisoned(item)}
        kept, withheld = self._pins.check(kind, items, hold=hold, paged=paged, last=last)
        for key, reason in withheld.items():
            self._log(f"observe mode: would withhold: {reason}" if self._relax_pins else reason)
            self._audit_denial(
                "s2c",
                None,
                None,
                Deny("pin.withheld", reason),
                enforced=False if self._relax_pins else None,
                **{_SUBJECT.get(kind, "resource"): key},
            )
        # Observe mode relaxing pins: withheld definitions are listed all the same.
        return items if self._relax_pins else kept


def _keyed_items(kind: str, items: list[Any]) -> list[tuple[str, Any]]:
    field = KEY_FIELDS.get(kind, SERVER_KEY)
    return [
        (item[field], item)
        for item in items
        if isinstance(item, dict) and isinstance(item.get(field), str)
    ]
