"""The client side of one HTTP conversation: routing frames between a client and its links.

A :class:`Front` holds the links (one per upstream server) that one client reaches: the links of
one legacy session, or the pooled links of one principal for 2026-07-28 requests. It sends each
client frame to the right link and each frame for the client to the HTTP response waiting for
it (a :class:`Waiter`), to the session's GET stream, or to a short backlog.

On ``/mcp`` the front aggregates: tools and prompts are renamed ``server__name``; list requests
go to every link and their results are merged; a call goes to the one server its name names;
resources are routed by the URIs their lists showed. On ``/servers/NAME/mcp`` frames pass
through untouched. Requests of the 2026 era (stateless: several clients' requests may share a
pooled link) are renumbered with ids unique in the process and numbered back in the answer.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
from collections import deque
from typing import Any, Final

import msgspec

from portcullis.gateway import frames as fr
from portcullis.gateway.frames import Frame
from portcullis.serve.link import Link

__all__ = ["SEP", "Front", "Waiter", "key_of", "swap_id", "with_id"]

SEP: Final = "__"
_BACKLOG: Final = 256
_RELATED_MAX: Final = 1024  # messages queued for one request's stream before its answer
_NAMED = {"tools/call": "tools", "prompts/get": "prompts"}
_LISTS = {
    "tools/list": ("tools", "name", True),
    "prompts/list": ("prompts", "name", True),
    "resources/list": ("resources", "uri", False),
    "resources/templates/list": ("resourceTemplates", "uriTemplate", False),
}
_BY_URI = ("resources/read", "resources/subscribe", "resources/unsubscribe")
_ids = itertools.count(1)  # 2026 request ids, unique in the process (pooled links are shared)


def key_of(rid: Any) -> tuple[str, Any]:
    """A dict key for a JSON-RPC id that keeps ``1`` and ``"1"`` apart."""
    return (type(rid).__name__, rid)


class _Env(msgspec.Struct):
    jsonrpc: str = "2.0"
    id: Any = None
    result: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET
    error: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET


def swap_id(raw: bytes, rid: Any) -> bytes:
    """A response with its id replaced; the result's bytes are copied, not re-encoded."""
    env = msgspec.json.decode(raw, type=_Env)
    env.id = rid
    return msgspec.json.encode(env)


class Waiter:
    """The frames one client request is waiting for: related messages, then its response."""

    def __init__(self, rid: Any) -> None:
        self.rid = rid  # the id on the links (renumbered for 2026 requests)
        self.client_rid = rid  # the id the client sent
        self.queue: asyncio.Queue[tuple[bool, bytes]] = asyncio.Queue()  # (final, frame)
        self.done = False


class _Fanout:
    def __init__(self, rid: Any, method: str, links: list[str]) -> None:
        self.rid = rid
        self.method = method
        self.waiting = set(links)
        self.results: dict[str, Any] = {}
        self.errors: dict[str, Any] = {}


class Front:
    """Routes one client's frames to its links and their frames back to the right response."""

    def __init__(self, links: dict[str, Link], *, aggregate: bool, modern: bool = False) -> None:
        self.links = links
        self.aggregate = aggregate
        self.modern = modern
        self.waiters: dict[tuple[str, Any], Waiter] = {}
        self.stream: asyncio.Queue[bytes] | None = None  # the legacy GET stream
        self.backlog: deque[bytes] = deque(maxlen=_BACKLOG)
        self.closed = False  # closed: its GET stream ends
        self._fanouts: dict[tuple[str, Any], _Fanout] = {}
        self._routed: dict[tuple[str, Any], str] = {}  # request key -> link it went to
        self._uris: dict[str, str] = {}  # resource URI -> link
        self._templates: list[tuple[str, str]] = []  # (URI template prefix, link)
        self._s2c: dict[str, tuple[str, Any]] = {}  # our id for a server request -> (link, id)
        self._s2c_ids = itertools.count(1)
        self._context: Waiter | None = None
        self._original: dict[tuple[str, Any], Any] = {}  # 2026: our id -> the client's id

    # -- client → links --------------------------------------------------------------------

    def open(self, rid: Any) -> Waiter:
        """Register the HTTP response that waits for request ``rid``."""
        waiter = Waiter(rid)
        self.waiters[key_of(rid)] = waiter
        return waiter

    def close_waiter(self, waiter: Waiter) -> None:
        """The HTTP response ended; later frames for it are dropped."""
        waiter.done = True
        self.waiters.pop(key_of(waiter.rid), None)

    def request(self, frame: Frame) -> Waiter:
        """Send a client request on; return what its HTTP response should wait on."""
        rid = frame.id
        raw = frame.raw
        if self.modern:
            ours = next(_ids)
            self._original[key_of(ours)] = rid
            raw = with_id(raw, ours)
            frame = fr.decode_frame(raw)
        waiter = self.open(frame.id)
        waiter.client_rid = rid
        self._context = waiter
        try:
            self._route_request(frame)
        finally:
            self._context = None
        return waiter

    def _route_request(self, frame: Frame) -> None:
        method = frame.method or ""
        if not self.aggregate:
            (link,) = self.links.values()
            self._routed[key_of(frame.id)] = link.name
            link.from_client(frame.raw)
            return
        if method == "ping":
            self._answer(frame.id, {})
        elif method in ("initialize", "server/discover", "logging/setLevel") or method in _LISTS:
            self._fan_out(frame, method)
        elif method in _NAMED or method == "completion/complete":
            self._named(frame, method)
        elif method in _BY_URI:
            self._by_uri(frame)
        elif len(self.links) == 1:
            (link,) = self.links.values()
            self._routed[key_of(frame.id)] = link.name
            link.from_client(frame.raw)
        else:
            self._fail(
                frame.id,
                -32601,
                f"{method} is not supported on the aggregated endpoint; "
                "use /servers/NAME/mcp for one server",
            )

    def notify(self, frame: Frame) -> None:
        """Send a client notification or response on."""
        if frame.kind == "response":
            self._client_response(frame)
            return
        if frame.method == "notifications/cancelled":
            msg = fr.loads_fast(frame.raw)
            rid = fr.cancelled_id(msg) if isinstance(msg, dict) else None
            name = self._routed.get(key_of(rid))
            if name is not None and name in self.links:
                self.links[name].from_client(frame.raw)
            for fan in self._fanouts.values():
                if fan.rid == rid:
                    for waiting in fan.waiting:
                        self.links[waiting].from_client(frame.raw)
            return
        for link in self.links.values():
            link.from_client(frame.raw)

    def _client_response(self, frame: Frame) -> None:
        if not self.aggregate:
            (link,) = self.links.values()
            link.from_client(frame.raw)
            return
        found = self._s2c.pop(str(frame.id), None) if isinstance(frame.id, str) else None
        if found is None:
            return  # an answer to nothing we asked: dropped, as the session would
        name, original = found
        if name in self.links:
            self.links[name].from_client(swap_id(frame.raw, original))

    async def cancel(self, waiter: Waiter) -> None:
        """The client went away before request ``waiter.rid`` was answered."""
        rid = waiter.rid
        self.close_waiter(waiter)
        self._original.pop(key_of(rid), None)  # a late answer is dropped, not numbered back
        note = fr.encode(
            {
                "jsonrpc": "2.0",
                "method": "notifications/cancelled",
                "params": {"requestId": rid, "reason": "the client disconnected"},
            }
        )
        names = {self._routed.pop(key_of(rid), None)}
        fan = self._fanouts.pop(key_of(rid), None)
        if fan is not None:
            names |= fan.waiting
        for name in names:
            link = self.links.get(name) if name else None
            if link is not None:
                link.from_client(note)
                await link.cancel(rid)

    # -- aggregation -----------------------------------------------------------------------

    def _fan_out(self, frame: Frame, method: str) -> None:
        targets = list(self.links)
        cursor: dict[str, Any] = {}
        if method in _LISTS:
            msg = fr.loads_fast(frame.raw)
            params = msg.get("params") if isinstance(msg, dict) else None
            given = params.get("cursor") if isinstance(params, dict) else None
            if given is not None:
                cursor = _open_cursor(given)
                targets = [t for t in cursor if t in self.links]
                if not targets:
                    self._fail(frame.id, -32602, "invalid cursor")
                    return
        fan = _Fanout(frame.id, method, targets)
        if not targets:
            self._answer(frame.id, {_LISTS.get(method, ("tools",))[0]: []})
            return
        self._fanouts[key_of(frame.id)] = fan
        for name in targets:
            raw = frame.raw
            if name in cursor:
                msg = fr.loads_fast(frame.raw)
                msg["params"]["cursor"] = cursor[name]
                raw = fr.encode(msg)
            self.links[name].from_client(raw)

    def _named(self, frame: Frame, method: str) -> None:
        msg = fr.loads_fast(frame.raw)
        params = msg.get("params") if isinstance(msg, dict) else None
        if not isinstance(params, dict):
            self._fail(frame.id, -32602, f"{method} needs params")
            return
        holder, key = params, "name"
        if method == "completion/complete":
            ref = params.get("ref")
            if isinstance(ref, dict) and ref.get("type") == "ref/resource":
                self._to_uri(frame, str(ref.get("uri", "")), frame.raw)
                return
            holder = ref if isinstance(ref, dict) else {}
        name = holder.get(key)
        server, sep, inner = name.partition(SEP) if isinstance(name, str) else ("", "", "")
        if not sep or server not in self.links:
            known = ", ".join(self.links) or "none"
            what = _NAMED.get(method, "prompts")[:-1]
            self._fail(
                frame.id,
                -32602,
                f"unknown {what} {name!r}: names on this endpoint are SERVER{SEP}NAME "
                f"(servers: {known})",
            )
            return
        holder[key] = inner
        self._routed[key_of(frame.id)] = server
        self.links[server].from_client(fr.encode(msg))

    def _by_uri(self, frame: Frame) -> None:
        msg = fr.loads_fast(frame.raw)
        params = msg.get("params") if isinstance(msg, dict) else None
        uri = params.get("uri") if isinstance(params, dict) else None
        self._to_uri(frame, uri if isinstance(uri, str) else "", frame.raw)

    def _to_uri(self, frame: Frame, uri: str, raw: bytes) -> None:
        name = self._uris.get(uri)
        if name is None:
            matches = [n for prefix, n in self._templates if prefix and uri.startswith(prefix)]
            name = matches[0] if len(set(matches)) == 1 else None
        if name is None and len(self.links) == 1:
            name = next(iter(self.links))
        if name is None or name not in self.links:
            self._fail(
                frame.id,
                -32602,
                f"no server on this endpoint is known to hold {uri!r}: list resources first, "
                "or use /servers/NAME/mcp",
            )
            return
        self._routed[key_of(frame.id)] = name
        self.links[name].from_client(raw)

    def _fan_in(self, fan: _Fanout, name: str, frame: Frame) -> None:
        fan.waiting.discard(name)
        msg = fr.loads_fast(frame.raw)
        if frame.is_error:
            fan.errors[name] = msg.get("error")
        else:
            fan.results[name] = msg.get("result")
        if fan.waiting:
            return
        self._fanouts.pop(key_of(fan.rid), None)
        if not fan.results:
            first = next(iter(fan.errors.values()), None)
            error = first if isinstance(first, dict) else {"code": -31902, "message": "failed"}
            self._route_to_client(fr.encode({"jsonrpc": "2.0", "id": fan.rid, "error": error}))
            return
        self._answer(fan.rid, self._merge(fan))

    def _merge(self, fan: _Fanout) -> dict[str, Any]:
        if fan.method in _LISTS:
            key, field, rename = _LISTS[fan.method]
            items: list[Any] = []
            more: dict[str, Any] = {}
            for name, result in fan.results.items():
                if not isinstance(result, dict):
                    continue
                for item in result.get(key) or []:
                    if not isinstance(item, dict):
                        continue
                    value = item.get(field)
                    if rename and isinstance(value, str):
                        item = {**item, field: f"{name}{SEP}{value}"}
                    elif isinstance(value, str) and key == "resources":
                        self._uris[value] = name
                    elif isinstance(value, str):
                        self._templates.append((value.split("{", 1)[0], name))
                    items.append(item)
                if result.get("nextCursor") is not None:
                    more[name] = result["nextCursor"]
            first = next((r for r in fan.results.values() if isinstance(r, dict)), {})
            merged = {k: v for k, v in first.items() if k not in (key, "nextCursor")}
            merged[key] = items
            if more:
                merged["nextCursor"] = _seal_cursor(more)
            return merged
        results = list(fan.results.values())
        base = dict(results[0]) if isinstance(results[0], dict) else {}
        if fan.method in ("initialize", "server/discover"):
            caps: dict[str, Any] = {}
            notes: list[str] = []
            for name, result in fan.results.items():
                if not isinstance(result, dict):
                    continue
                for cap, value in (result.get("capabilities") or {}).items():
                    if isinstance(value, dict) and isinstance(caps.get(cap), dict):
                        caps[cap] = {**caps[cap], **value}
                    else:
                        caps.setdefault(cap, value)
                text = result.get("instructions")
                if isinstance(text, str) and text:
                    notes.append(f"[{name}] {text}")
            base["capabilities"] = caps
            from portcullis._version import __version__

            base["serverInfo"] = {"name": "portcullis", "version": __version__}
            base.pop("instructions", None)
            if notes:
                base["instructions"] = "\n\n".join(notes)
        return base

    # -- links → client --------------------------------------------------------------------

    def deliver(self, link: Link, raw: bytes) -> None:
        """A frame for the client from ``link`` (a response, a notification, a request)."""
        try:
            frame = fr.decode_frame(raw)
        except fr.FrameError:
            return
        if frame.kind == "response":
            key = key_of(frame.id)
            fan = self._fanouts.get(key)
            if fan is not None:
                if link.name in fan.waiting:
                    self._fan_in(fan, link.name, frame)
                return  # a server that was not asked (or answered twice): dropped
            if self._routed.get(key) != link.name:
                # Ids are guessable: one server must not answer a request sent to another.
                return
            self._routed.pop(key, None)
            self._route_to_client(raw, frame)
            return
        if frame.kind == "request" and self.aggregate:
            ours = f"portcullis-a{next(self._s2c_ids)}"
            self._s2c[ours] = (link.name, frame.id)
            raw = with_id(raw, ours)
        self._related(raw)

    def _route_to_client(self, raw: bytes, frame: Frame | None = None) -> None:
        rid = frame.id if frame is not None else fr.decode_frame(raw).id
        waiter = self.waiters.pop(key_of(rid), None)
        if waiter is None or waiter.done:
            self._original.pop(key_of(rid), None)
            return
        if self.modern:
            original = self._original.pop(key_of(rid), rid)
            raw = swap_id(raw, original)
        waiter.done = True
        waiter.queue.put_nowait((True, raw))

    def _related(self, raw: bytes) -> None:
        # A message about the request being handled right now goes on that request's stream;
        # anything else on the GET stream, else on any open request stream, else the backlog.
        target = self._context
        if target is None or target.done:
            if self.stream is not None:
                # The GET stream's queue is bounded: a client that never reads it loses
                # messages instead of growing the gateway's memory without end.
                with contextlib.suppress(asyncio.QueueFull):
                    self.stream.put_nowait(raw)
                return
            target = next((w for w in self.waiters.values() if not w.done), None)
        if target is not None and not target.done:
            # Related messages past the bound are dropped (a chatty server, a slow client);
            # the final answer is always queued.
            if target.queue.qsize() < _RELATED_MAX:
                target.queue.put_nowait((False, raw))
        else:
            self.backlog.append(raw)

    def _answer(self, rid: Any, result: Any) -> None:
        self._route_to_client(fr.result_response(rid, result))

    def _fail(self, rid: Any, code: int, message: str) -> None:
        self._route_to_client(fr.error_response(rid, code, message))

    async def close(self) -> None:
        """Close every link (the upstreams stop) and release waiting responses."""
        self.closed = True
        for waiter in list(self.waiters.values()):
            self._fail(waiter.rid, -31902, "the session ended")
        for link in list(self.links.values()):
            with contextlib.suppress(Exception):
                await link.close()


def with_id(raw: bytes, rid: Any) -> bytes:
    """A message with its id replaced (decoded and encoded again)."""
    msg = fr.loads_fast(raw)
    msg["id"] = rid
    return fr.encode(msg)


def _seal_cursor(more: dict[str, Any]) -> str:
    return "pcc1." + base64.urlsafe_b64encode(fr.encode(more)).decode("ascii")


def _open_cursor(cursor: Any) -> dict[str, Any]:
    if not isinstance(cursor, str) or not cursor.startswith("pcc1."):
        return {}
    try:
        value = fr.loads_fast(base64.urlsafe_b64decode(cursor[5:]))
    except (ValueError, msgspec.DecodeError):
        return {}
    return value if isinstance(value, dict) else {}
