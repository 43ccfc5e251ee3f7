"""Everything one ``portcullis serve`` process holds: policy, audit, state, sessions, pools.

The hub builds a :class:`~portcullis.serve.link.Link` per (client, server) from the policy: the
gateway session with the server's rules plus the principal's identity rules, and the upstream
(a sandboxed child when configured, or a remote HTTP server with its own credentials). Legacy
sessions own their links (so two principals never share a server process); 2026-07-28
requests use links pooled per principal. Idle links are stopped; a session whose links were
stopped, or that began on another replica, is rebuilt from its sealed session id.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from portcullis._exceptions import ConfigError, GatewayError
from portcullis.policy.compiled import CompiledPolicy, ServerPolicy
from portcullis.serve.front import Front
from portcullis.serve.identity import Access, labels
from portcullis.serve.link import Link
from portcullis.serve.tokens import SessionState
from portcullis.serve.types import Principal, Upstream

__all__ = ["Hub", "Live", "log_line", "principal_key"]


def principal_key(principal: Principal) -> str:
    """How a principal is named in session ids, seals and pools."""
    return f"{principal.kind}:{principal.name}"


class Live:
    """A legacy session open on this replica."""

    def __init__(self, state: SessionState, front: Front) -> None:
        self.state = state
        self.front = front
        self.last_used = time.monotonic()
        self.lock = asyncio.Lock()


class Hub:
    """Builds and keeps the links of this replica."""

    def __init__(
        self,
        policy: CompiledPolicy,
        *,
        home: Path,
        install_key: bytes,
        record: Callable[[dict[str, Any]], None],
        sealer: Any,
        channel: Callable[[Principal, str], Any] | None,
        log: Callable[[str], None],
    ) -> None:
        self.policy = policy
        self.home = home
        self._key = install_key
        self._record = record
        self._sealer = sealer
        self._channel = channel
        self._log = log
        self.sessions: dict[str, Live] = {}
        self.pools: dict[tuple[str, str], Front] = {}
        self._pool_locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._shared: dict[str, Any] = {}  # server name -> SharedUpstream (2026, shared: true)
        self.closed = False  # set by close(): no link is started after it
        from portcullis.detect.paths import default_protected

        self.protected = default_protected(policy.source, str(home))

    # -- links -----------------------------------------------------------------------------

    async def front(
        self, access: Access, names: list[str], *, aggregate: bool, sid: str, modern: bool
    ) -> Front:
        """A front with started links to ``names`` for ``access.principal``."""
        if self.closed:
            raise GatewayError("the gateway is shutting down")
        front = Front({}, aggregate=aggregate, modern=modern)
        try:
            for name in names:
                link = self._link(self.policy.servers[name], access, sid, front, modern)
                front.links[name] = link
            # Every start runs to its end before a failure is acted on: closing a link whose
            # start is still spawning its process would leave that process running.
            results = await asyncio.gather(
                *(link.start() for link in front.links.values()), return_exceptions=True
            )
            for result in results:
                if isinstance(result, BaseException):
                    raise result
            if self.closed:  # shut down while starting: nobody would stop these links
                raise GatewayError("the gateway is shutting down")
        except BaseException:
            await front.close()
            raise
        return front

    def _link(
        self, server: ServerPolicy, access: Access, sid: str, front: Front, modern: bool = False
    ) -> Link:
        from portcullis.audit import digest_args
        from portcullis.gateway.auditor import Auditor
        from portcullis.gateway.guards.arguments import ArgumentGuard
        from portcullis.gateway.guards.tools import RuleSet
        from portcullis.gateway.session import Session

        principal = access.principal
        auditor = Auditor(
            self._record,
            lambda value: digest_args(self._key, value),
            arguments=self.policy.audit.arguments,
            base={
                "policy": self.policy.digest,
                "session": sid,
                "principal": principal.name,
                "server": server.name,
            },
        )
        upstream, jail, identity = self._upstream(server, auditor)
        try:
            pins = None
            if server.pin:
                from portcullis.gateway.guards.pinning import PinGuard
                from portcullis.pins import PinStore

                pins = PinGuard(PinStore(), server.name, identity, log=self._log)
            session = Session(
                server,
                auditor,
                pins=pins,
                arguments=ArgumentGuard(server, protected=self.protected, cwd=server.launch.cwd),
                broker=self._broker(principal),
                sealer=self._sealer,
                principal=principal_key(principal),
            )
            session.restrict(
                [
                    RuleSet(rules, "tool", f'{server.name}" for identity "{who}')
                    for who, rules in access.tools
                ]
            )
        except BaseException:
            # Nothing owns the sandbox plan (its egress proxy) yet: stop it here.
            if jail is not None:
                jail.close()
            raise
        # Only now, when nothing can fail before the link owns it: a view nobody closes would
        # keep the shared process alive after every real user left.
        if modern and server.launch.shared and server.launch.command:
            upstream = self._share(server.name, upstream, jail)
            jail = None  # stopped with the shared process, not with this link
        link = Link(server.name, session, upstream, front.deliver)
        if jail is not None:
            link.cleanup.append(jail.close)
        return link

    def _upstream(self, server: ServerPolicy, auditor: Any) -> tuple[Upstream, Any, Any]:
        from portcullis.pins import launch_id
        from portcullis.policy.refs import resolve

        launch = server.launch
        settings = self.policy.serve
        timeout = settings.upstream_timeout_s if settings else 300.0
        if launch.url:
            from portcullis.serve.upstream_http import HttpUpstream

            headers = {
                k: resolve(v, key=f"servers.{server.name}.headers.{k}")
                for k, v in launch.headers.items()
            }
            identity = launch_id(server.name, None, url=launch.url, env=launch.headers.keys())
            upstream: Upstream = HttpUpstream(
                server.name,
                launch.url,
                headers=headers,
                max_message_bytes=server.max_message_bytes,
                timeout_s=timeout,
                log=self._log,
            )
            return upstream, None, identity
        if not launch.command:
            raise ConfigError(f'server "{server.name}" has neither a command nor a url')
        import os

        from portcullis.gateway.transports.stdio import child_env
        from portcullis.policy.refs import resolve_env
        from portcullis.serve.upstream_stdio import StdioUpstream

        command = [launch.command, *launch.args]
        server_env = resolve_env(launch.env)
        argv, env, cwd = command, child_env(server_env), launch.cwd
        jail = None
        if server.sandbox is not None or server.paths.read_only:
            from portcullis.sandbox.launch import prepare

            def egress(fields: dict[str, Any]) -> None:
                auditor.write(direction="c2s", method="sandbox/egress", **fields)

            prepared = prepare(
                server,
                command,
                env=server_env,
                passthrough=os.environ,
                protected=self.protected,
                state_dir=self.home,
                log=self._log,
                record=egress,
            )
            if isinstance(prepared, str):
                auditor.write(
                    direction="c2s",
                    method="sandbox",
                    decision="flag",
                    rule="sandbox.unavailable",
                    reason=f"running without the sandbox: {prepared}",
                )
            elif prepared is not None:
                jail = prepared
                argv, env, cwd = prepared.plan.argv, prepared.plan.env, None
        identity = launch_id(server.name, command[0], command[1:], env=launch.env.keys())
        stdio = StdioUpstream(
            server.name,
            argv,
            env=env,
            cwd=cwd,
            max_message_bytes=server.max_message_bytes,
            log=self._log,
        )
        return stdio, jail, identity

    def _share(self, name: str, fresh: Upstream, jail: Any) -> Upstream:
        """A view of the one process serving every principal's 2026 requests to ``name``."""
        from portcullis.serve.shared import SharedUpstream

        shared = self._shared.get(name)
        if shared is None or shared.gone or shared.closed:
            shared = SharedUpstream(fresh, cleanup=jail.close if jail is not None else None)
            self._shared[name] = shared
        elif jail is not None:
            jail.close()  # the fresh plan is not used: the running process is
        view: Upstream = shared.view()
        return view

    def _broker(self, principal: Principal) -> Any:
        from portcullis.approval.broker import Broker

        channels: dict[str, Any] = {}
        approvals = self.policy.approvals
        if "console" in approvals.channels and self._channel is not None:
            channels["console"] = self._channel(principal, "\n".join(labels(principal)))
        return Broker(channels, approvals.timeout_s, order=approvals.channels)

    # -- pools (2026-07-28) ----------------------------------------------------------------

    async def pooled(self, access: Access, path: str, names: list[str], aggregate: bool) -> Front:
        """The pooled front of one principal for ``path``; started on first use."""
        key = (principal_key(access.principal), path)
        front = self.pools.get(key)
        if front is not None and not any(link.gone for link in front.links.values()):
            return front
        lock = self._pool_locks.setdefault(key, asyncio.Lock())
        async with lock:
            front = self.pools.get(key)
            if front is not None and any(link.gone for link in front.links.values()):
                self.pools.pop(key, None)
                await front.close()
                front = None
            if front is None:
                sid = f"pool-{key[0]}"
                front = await self.front(access, names, aggregate=aggregate, sid=sid, modern=True)
                other = self.pools.get(key)
                if other is not None:
                    # Built meanwhile under a lock reap() had forgotten: keep one, stop the
                    # other (a front dropped from the pool would never be stopped).
                    if not any(link.gone for link in other.links.values()):
                        await front.close()
                        return other
                    await other.close()
                self.pools[key] = front
            return front

    # -- housekeeping ----------------------------------------------------------------------

    async def reap(self, idle_s: float) -> None:
        """Stop links unused for ``idle_s`` (sessions stay valid: they are rebuilt on use)."""
        now = time.monotonic()
        for sid, live in list(self.sessions.items()):
            # An open GET stream is a session in use: stopping its links would leave the
            # client listening on a stream nothing is delivered to any more.
            busy = live.front.waiters or live.front.stream is not None
            idle = now - live.last_used > idle_s and not busy
            # A session whose server exited is stopped too: its next request rebuilds it
            # (a new process, the client's handshake replayed) instead of failing for good.
            broken = any(link.gone for link in live.front.links.values())
            if idle or (broken and not live.front.waiters):
                self.sessions.pop(sid, None)
                await live.front.close()
        for key, front in list(self.pools.items()):
            used = max((link.last_used for link in front.links.values()), default=0.0)
            if now - used > idle_s and not front.waiters:
                self.pools.pop(key, None)
                await front.close()
        # One lock per principal ever seen would grow without bound (OAuth subjects are many).
        for key, lock in list(self._pool_locks.items()):
            if key not in self.pools and not lock.locked():
                del self._pool_locks[key]

    async def close(self) -> None:
        """Stop every upstream of this replica; links started later are refused."""
        self.closed = True
        fronts = [live.front for live in self.sessions.values()] + list(self.pools.values())
        self.sessions.clear()
        self.pools.clear()
        await asyncio.gather(*(f.close() for f in fronts), return_exceptions=True)


def log_line(text: str) -> None:
    """The serve process's own log line on stderr (text or JSON: serve.logs)."""
    from portcullis.serve.logs import log

    log(text)
