"""The console's Starlette application: routes, pages and the live (SSE) streams.

Pages are rendered on the server with Jinja2 (autoescape on) and work without JavaScript;
htmx, shipped in ``static/vendor``, only adds the live updates. Every data call goes through
:mod:`portcullis.console.data` and :mod:`portcullis.console.overview` in a worker thread.
The :class:`~portcullis.console.security.Gate` in front of the routes does authentication,
CSRF, Host/Origin and the headers.
"""

from __future__ import annotations

import functools
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

import anyio
import jinja2
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from portcullis.console import data
from portcullis.console.overview import overview
from portcullis.console.render import visible
from portcullis.console.security import Gate, Session, Sessions

if TYPE_CHECKING:
    from portcullis.policy.compiled import CompiledPolicy

__all__ = ["ConsoleConfig", "build_app"]

_HERE: Final = Path(__file__).parent
_POLL_S: Final = 0.5
_KEEPALIVE_S: Final = 15.0
_MAX_STREAM_S: Final = 600.0  # the browser reconnects; no stream lives forever
_MAX_STREAMS: Final = 16


@dataclass
class ConsoleConfig:
    """What the console serves and where it listens."""

    policy: CompiledPolicy
    state: Path  # $PORTCULLIS_HOME
    log: Path  # the audit log
    queue: Path  # <state>/approvals
    host: str
    port: int
    tls: bool = False
    stopping: Callable[[], bool] = lambda: False  # the server is shutting down
    poll_s: float = _POLL_S
    sessions: Sessions = field(default_factory=Sessions)

    @property
    def scheme(self) -> str:
        """The URL scheme: ``https`` under TLS, else ``http``."""
        return "https" if self.tls else "http"

    @property
    def exposed(self) -> bool:
        """Whether the console listens beyond loopback (the page then says so)."""
        return self.host not in ("127.0.0.1", "localhost", "::1", "[::1]")

    @property
    def url(self) -> str:
        """The login URL printed on stdout."""
        host = f"[{self.host}]" if ":" in self.host and not self.host.startswith("[") else self.host
        return f"{self.scheme}://{host}:{self.port}/?token={self.sessions.token}"


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(_HERE / "templates")),
        autoescape=True,  # every template is HTML, whatever its name
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["visible"] = visible
    return env


class _Console:
    def __init__(self, config: ConsoleConfig) -> None:
        self.config = config
        self.env = _environment()
        self.streams = 0
        self._sandbox: tuple[str | None] | None = None
        self._integrity: tuple[Any, data.Integrity] | None = None

    # -- helpers --------------------------------------------------------------------------

    def render(self, name: str, request: Request | None, **context: Any) -> str:
        session: Session | None = request.scope.get("state", {}).get("session") if request else None
        flash: list[str] = []
        if session is not None and context.pop("take_flash", True):
            flash, session.flash[:] = list(session.flash), []
        return self.env.get_template(name).render(
            csrf=session.csrf if session else "",
            flash=flash,
            exposed=self.config.exposed,
            where=f"{self.config.scheme}://{self.config.host}:{self.config.port}",
            **context,
        )

    def page(self, name: str, request: Request, status: int = 200, **context: Any) -> Response:
        return HTMLResponse(self.render(name, request, **context), status_code=status)

    def refusal(self, status: int, text: str) -> bytes:
        return self.render("refused.html", None, status=status, text=text).encode()

    def sandbox_why_not(self) -> str | None:
        if self._sandbox is None:
            policy = self.config.policy
            wanted = any(s.sandbox is not None for s in [policy.defaults, *policy.servers.values()])
            if not wanted:
                self._sandbox = (None,)
            else:
                from portcullis.sandbox.detect import unavailable

                self._sandbox = (unavailable(self.config.state),)
        return self._sandbox[0]

    def integrity(self) -> data.Integrity:
        # Verifying reads the whole log: do it again only when the log changed.
        signature = data.log_signature(self.config.log)
        if self._integrity is None or self._integrity[0] != signature:
            self._integrity = (signature, data.integrity(self.config.log, self.config.state))
        return self._integrity[1]

    def approvals_html(self, request: Request) -> tuple[Any, str]:
        """The approvals list, and what identifies its content apart from the countdowns."""
        from portcullis._exceptions import ApprovalError
        from portcullis.approval.console import pending

        error = ""
        try:
            entries = pending(self.config.queue)
        except ApprovalError as exc:
            entries, error = [], str(exc)
        views = data.approval_views(entries)
        html = self.render("_approvals.html", request, items=views, error=error, take_flash=False)
        # Time left changes every second; only a new, gone or changed request is news.
        return (error, [(v.id, v.digest) for v in views]), html

    def audit_rows(
        self, request: Request, filters: data.AuditFilters, page: int
    ) -> tuple[Any, str, data.AuditPage]:
        result = data.audit_page(self.config.log, filters, page)
        html = self.render("_audit_rows.html", request, result=result, take_flash=False)
        return html, html, result

    # -- pages ----------------------------------------------------------------------------

    async def overview(self, request: Request) -> Response:
        def gather() -> Any:
            return overview(
                self.config.policy,
                state=self.config.state,
                log=self.config.log,
                sandbox_why_not=self.sandbox_why_not(),
            )

        view = await anyio.to_thread.run_sync(gather)
        return self.page("overview.html", request, view=view, active="overview")

    async def approvals(self, request: Request) -> Response:
        _, body = await anyio.to_thread.run_sync(self.approvals_html, request)
        return self.page("approvals.html", request, body=body, active="approvals")

    async def answer(self, request: Request) -> Response:
        form = await request.form()
        rid = request.path_params["rid"]
        decision = str(form.get("decision", ""))
        digest = str(form.get("digest", ""))
        session: Session = request.scope["state"]["session"]
        if decision not in ("approve", "deny", "session") or not digest:
            session.flash.append("That answer was not understood; nothing was answered.")
        else:
            chosen: Literal["approve", "deny", "session"] = (
                "approve" if decision == "approve" else "deny" if decision == "deny" else "session"
            )
            result = await anyio.to_thread.run_sync(
                data.answer_request, self.config.queue, rid, chosen, digest
            )
            session.flash.append(result.message)
        return RedirectResponse("/approvals", status_code=303)

    async def definitions(self, request: Request) -> Response:
        changes = await anyio.to_thread.run_sync(
            data.definition_changes, self.config.state / "pins"
        )
        servers = sorted({c.server for c in changes})
        # "Approve all" binds to every pending definition of the server shown on this page.
        bound = {s: data.shown_digest(changes, s) for s in servers}
        return self.page(
            "definitions.html",
            request,
            changes=changes,
            servers=servers,
            bound=bound,
            active="definitions",
        )

    async def approve_definitions(self, request: Request) -> Response:
        from portcullis._exceptions import PortcullisError

        form = await request.form()
        server = str(form.get("server", ""))
        key = form.get("key")
        shown = str(form.get("shown", ""))
        session: Session = request.scope["state"]["session"]
        keys: list[str] | Literal["all"] = "all" if form.get("all") == "1" else [str(key or "")]
        if not server or keys == [""]:
            session.flash.append("Name a server and a definition; nothing was approved.")
            return RedirectResponse("/definitions", status_code=303)
        try:
            approved = await anyio.to_thread.run_sync(
                functools.partial(
                    data.approve_definitions, server, keys, self.config.state / "pins", shown=shown
                )
            )
        except PortcullisError as exc:
            session.flash.append(f"Nothing was approved: {visible(str(exc))}")
        else:
            names = ", ".join(f"{kind} {visible(k)}" for kind, k in approved) or "nothing"
            session.flash.append(f"Re-pinned for {visible(server)}: {names}")
        return RedirectResponse("/definitions", status_code=303)

    async def keep_blocked(self, request: Request) -> Response:
        form = await request.form()
        session: Session = request.scope["state"]["session"]
        name = visible(str(form.get("key", "")))
        session.flash.append(
            f"Kept blocked: {name} stays withheld from clients until approved (nothing changed)."
        )
        return RedirectResponse("/definitions", status_code=303)

    def _filters(self, request: Request) -> tuple[data.AuditFilters, int]:
        q = request.query_params
        fields = {k: q.get(k, "").strip()[:200] for k in data.AuditFilters.__dataclass_fields__}
        try:
            page = max(1, min(10_000, int(q.get("page", "1"))))
        except ValueError:
            page = 1
        return data.AuditFilters(**fields), page

    async def audit(self, request: Request) -> Response:
        from urllib.parse import urlencode

        filters, page = self._filters(request)
        _, rows, result = await anyio.to_thread.run_sync(self.audit_rows, request, filters, page)
        status = await anyio.to_thread.run_sync(self.integrity)
        chosen = {k: v for k, v in vars(filters).items() if v}

        def query_for(n: int) -> str:
            return urlencode({**chosen, "page": n})

        return self.page(
            "audit.html",
            request,
            filters=filters,
            decisions=data.DECISIONS,
            problems=filters.problems(),
            rows=rows,
            result=result,
            integrity=status,
            query=urlencode(chosen),
            query_for=query_for,
            active="audit",
        )

    async def record(self, request: Request) -> Response:
        from portcullis._exceptions import AuditError

        seq: int = request.path_params["seq"]
        try:
            text = await anyio.to_thread.run_sync(data.audit_record, self.config.log, seq)
        except AuditError as exc:
            error = visible(str(exc))
            return self.page(
                "record.html", request, 422, seq=seq, text=None, error=error, active="audit"
            )
        status = 200 if text is not None else 404
        return self.page(
            "record.html", request, status, seq=seq, text=text, error="", active="audit"
        )

    # -- live -----------------------------------------------------------------------------

    def _stream(
        self, request: Request, event: str, produce: Callable[[], tuple[Any, str]]
    ) -> Response:
        if self.streams >= _MAX_STREAMS:
            return Response("too many live streams", status_code=503)
        return StreamingResponse(
            self._events(request, event, produce),
            media_type="text/event-stream",
            headers={"X-Accel-Buffering": "no"},
        )

    async def _events(
        self, request: Request, event: str, produce: Callable[[], tuple[Any, str]]
    ) -> AsyncIterator[bytes]:
        self.streams += 1
        try:
            last: Any = None
            first = True
            started = quiet = time.monotonic()
            yield b"retry: 2000\n\n"
            while not self.config.stopping() and time.monotonic() - started < _MAX_STREAM_S:
                key, html = await anyio.to_thread.run_sync(produce)
                now = time.monotonic()
                if first or key != last:
                    first, last, quiet = False, key, now
                    lines = "".join(f"data: {line}\n" for line in html.splitlines() or [""])
                    yield f"event: {event}\n{lines}\n".encode()
                elif now - quiet > _KEEPALIVE_S:
                    quiet = now
                    yield b": keep-alive\n\n"
                with anyio.move_on_after(self.config.poll_s):
                    if await request.is_disconnected():
                        return
                    await anyio.sleep(self.config.poll_s)
        finally:
            self.streams -= 1

    async def approval_events(self, request: Request) -> Response:
        return self._stream(request, "approvals", lambda: self.approvals_html(request))

    async def audit_events(self, request: Request) -> Response:
        filters, page = self._filters(request)
        last: list[Any] = [None, None]

        def produce() -> tuple[Any, str]:
            # Reading the log is the cost: read it again only when a file of it changed.
            signature = data.log_signature(self.config.log)
            if last[1] is None or last[0] != signature:
                key, html, _ = self.audit_rows(request, filters, page)
                last[:] = [signature, (key, html)]
            out: tuple[Any, str] = last[1]
            return out

        return self._stream(request, "audit", produce)


def build_app(config: ConsoleConfig) -> Gate:
    """The console as an ASGI app, its gate in front."""
    from portcullis.console.security import allowed_hosts

    console = _Console(config)
    routes = [
        Route("/", console.overview),
        Route("/approvals", console.approvals),
        Route("/approvals/{rid:str}", console.answer, methods=["POST"]),
        Route("/definitions", console.definitions),
        Route("/definitions/approve", console.approve_definitions, methods=["POST"]),
        Route("/definitions/keep", console.keep_blocked, methods=["POST"]),
        Route("/audit", console.audit),
        Route("/audit/record/{seq:int}", console.record),
        Route("/events/approvals", console.approval_events),
        Route("/events/audit", console.audit_events),
        Mount("/static", StaticFiles(directory=str(_HERE / "static")), name="static"),
    ]
    app = Starlette(routes=routes)
    return Gate(
        app,
        sessions=config.sessions,
        hosts=allowed_hosts(config.host, config.port),
        scheme=config.scheme,
        render_refusal=console.refusal,
    )
