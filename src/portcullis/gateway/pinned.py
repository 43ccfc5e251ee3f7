"""Calls checked against the pins before they are forwarded.

A ``tools/call`` for a tool the session has not seen listed (a client that calls without
listing, a gateway restarted since, or a ``list_changed`` in between) is held while the gateway
lists the server's tools itself, under its own request ids; then it is forwarded or refused.
This is the part of :class:`~portcullis.gateway.session.Session` that does it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Final

import msgspec

from portcullis.gateway import frames as fr
from portcullis.gateway.frames import Frame, StrictJSONError
from portcullis.gateway.guards.content import poisoned
from portcullis.gateway.guards.pinning import PinGuard
from portcullis.gateway.guards.tools import LayeredRules, RuleSet
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

    def _check_arguments(self, method: str, subject: str, params: dict[str, Any]) -> Deny | None:
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
            # Tools the rules refuse are never shown, so they are neither pinned nor pending.
            shown = [
                t
                for t in tools
                if isinstance(t, dict)
                and not isinstance(self._tools.decide(str(t.get("name"))), Deny)
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
            if not isinstance(verdict, Deny):
                # Now with the tool's input schema: arguments it describes as paths count.
                verdict = self._check_arguments("tools/call", call.name, call.params) or verdict
            if isinstance(verdict, Deny) or self._pins is None:
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
            self._log(reason)
            self._audit_denial(
                "s2c",
                None,
                None,
                Deny("pin.withheld", reason),
                **{_SUBJECT.get(kind, "resource"): key},
            )
        return kept


def _keyed_items(kind: str, items: list[Any]) -> list[tuple[str, Any]]:
    field = KEY_FIELDS.get(kind, SERVER_KEY)
    return [
        (item[field], item)
        for item in items
        if isinstance(item, dict) and isinstance(item.get(field), str)
    ]
