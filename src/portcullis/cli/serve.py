"""``portcullis serve``: the authenticated Streamable HTTP gateway."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from portcullis.policy.compiled import CompiledPolicy, ServeSettings

__all__ = ["register"]

_DESCRIPTION = """\
Serve the policy's servers over Streamable HTTP (both protocol eras): /mcp for every server
the caller may use (tools named server__tool), /servers/NAME/mcp for one, /approvals for the
approval queue, /healthz, /readyz and /metrics. Clients authenticate with API keys
(`portcullis keys create`) or OAuth access tokens (serve.auth.oauth). Binds 127.0.0.1 unless
told otherwise, and refuses a non-loopback address without serve.tls."""


def register(sub: Any) -> None:
    """Add the ``serve`` command."""
    p = sub.add_parser("serve", help="the authenticated HTTP gateway", description=_DESCRIPTION)
    p.add_argument("--policy", metavar="F", help="policy file (default: as for `run`)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8787, help="port (default 8787; 0: any free)")
    p.add_argument("--keys", metavar="F", help="API keys file (default <state dir>/keys.json)")
    p.add_argument(
        "--log-format",
        choices=("text", "json"),
        default="text",
        help="stderr lines as text (default) or one JSON object each, for log shippers",
    )
    p.set_defaults(handler=_serve)


def _serve(args: argparse.Namespace) -> int:
    import asyncio

    from portcullis.policy.load import load_policy
    from portcullis.serve.logs import configure

    configure(args.log_format)
    policy = load_policy(args.policy)
    settings = _check(policy, args.host)
    _warn_observing(policy)
    try:
        import uvloop

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:  # pragma: no cover - Windows
        runner = asyncio.Runner()
    with runner:
        return runner.run(_main(args, policy, settings))


def _warn_observing(policy: CompiledPolicy) -> None:
    """One loud line per server in observe mode, so nobody mistakes it for enforce mode."""
    import sys

    from portcullis.gateway.auditor import observe_warning

    for server in policy.servers.values():
        warning = observe_warning(server)
        if warning is not None:
            print(f"portcullis: {warning}", file=sys.stderr, flush=True)


def _check(policy: CompiledPolicy, host: str) -> ServeSettings:
    """Refuse what must not start: no authentication, plain HTTP off loopback, missing guards."""
    import ipaddress

    from portcullis._exceptions import ConfigError
    from portcullis.policy.compiled import ServeSettings

    where = policy.source or "the built-in default policy"
    settings = policy.serve or ServeSettings()
    if not settings.api_keys and settings.oauth is None:
        raise ConfigError(
            f"{where}: serve.auth turns off every kind of authentication; "
            "portcullis serve refuses to start without authentication"
        )
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        loopback = False
    if not loopback and settings.tls_cert is None:
        raise ConfigError(
            f"refusing to listen on {host} without TLS: set serve.tls (cert, key) in {where}, "
            "or bind 127.0.0.1"
        )
    if not policy.servers:
        raise ConfigError(f"{where} defines no servers to serve")
    for server in policy.servers.values():
        if server.unimplemented:
            raise ConfigError(
                f'{where}: server "{server.name}" configures {", ".join(server.unimplemented)}, '
                "which this version does not enforce; refusing to start"
            )
    return settings


async def _main(args: argparse.Namespace, policy: CompiledPolicy, settings: ServeSettings) -> int:
    import asyncio
    import signal
    from pathlib import Path
    from urllib.parse import urlsplit

    import uvicorn

    from portcullis._exceptions import AuditError, ConfigError
    from portcullis._state import install_key, state_dir
    from portcullis.approval.seal import Sealer
    from portcullis.audit import AuditLog
    from portcullis.audit.sinks import sinks_for
    from portcullis.policy.refs import resolve
    from portcullis.serve.app import App
    from portcullis.serve.approvals import ServeChannel
    from portcullis.serve.auth import Authenticator
    from portcullis.serve.hub import Hub, log_line
    from portcullis.serve.listen import bind, guarded_protocol
    from portcullis.serve.metrics import Metrics
    from portcullis.serve.state import open_state
    from portcullis.serve.tokens import TokenSealer

    home = state_dir()
    key = install_key(home)
    log_path = Path(policy.audit.path).expanduser() if policy.audit.path else home / "audit.jsonl"
    try:
        log = AuditLog(log_path, key, rotate_bytes=policy.audit.rotate_bytes)
    except AuditError as exc:
        raise ConfigError(f"refusing to start: the audit log cannot be written: {exc}") from exc
    metrics = Metrics()
    shippers = sinks_for(policy.audit, lambda ref: resolve(ref, key="audit"))

    def record(fields: dict[str, Any]) -> None:
        log.append(fields)  # the source of truth: a failure here refuses the call
        metrics.observe(fields)
        for shipper in shippers:
            shipper.write(fields)

    redis_url = resolve(settings.redis, key="serve.redis") if settings.redis else None
    state = await open_state(redis_url)
    if settings.session_key:
        session_key = resolve(settings.session_key, key="serve.sessions.key").encode()
        if len(session_key) < 32:
            raise ConfigError("serve.sessions.key must be at least 32 characters")
    else:
        session_key = await state.shared_secret("session-key")
    shared = redis_url is not None
    sealer = (
        Sealer(
            await state.shared_secret("approval-seal"),
            instance="serve",
            nonces=state.nonce_store(),
        )
        if shared
        else Sealer(key)
    )
    loop = asyncio.get_running_loop()
    scheme = "https" if settings.tls_cert else "http"
    # Bound here, before anything else is built, so that --port 0 is known everywhere.
    sock = bind(args.host, args.port)
    sock.set_inheritable(True)
    bound = {"port": sock.getsockname()[1]}

    def base_url() -> str:
        return settings.public_url or f"{scheme}://{_netloc(args.host, bound['port'])}"

    resource_url = settings.oauth.audience if settings.oauth else base_url() + "/mcp"
    keys = None
    if settings.api_keys:
        from portcullis.serve.keys import KeyStore

        keys = KeyStore.load(Path(args.keys) if args.keys else home / "keys.json")
    oauth = None
    if settings.oauth is not None:
        from portcullis.serve.oauth import OAuthVerifier

        oauth = OAuthVerifier(settings.oauth)
    auth = Authenticator(settings, keys=keys, oauth=oauth, resource_url=resource_url)
    hub = Hub(
        policy,
        home=home,
        install_key=key,
        record=record,
        sealer=sealer,
        channel=lambda principal, labels: ServeChannel(state, principal, labels, loop),
        log=log_line,
    )
    # Files outside the state directory that are just as off limits to every guarded tool
    # (and to every sandbox): an audit log kept elsewhere, its anchor and lock; the keys file.
    if policy.audit.path:
        log_file = log_path.absolute()
        hub.protected += [str(log_file), f"{log_file}.anchor", f"{log_file}.lock"]
    if args.keys:
        hub.protected.append(str(Path(args.keys).absolute()))

    async def ready() -> str | None:
        try:
            await state.ping()
        except Exception as exc:
            return f"shared state unreachable: {type(exc).__name__}"
        return None

    async def shutdown() -> None:
        await state.close()
        for shipper in shippers:
            await asyncio.to_thread(shipper.close, 5.0)
        log.close()

    hosts = _Hosts(settings, args.host, bound)
    public = urlsplit(settings.public_url) if settings.public_url else None
    origins = {o.lower() for o in settings.allowed_origins}
    if public is not None:
        origins.add(f"{public.scheme}://{public.netloc}".lower())
    app = App(
        policy,
        hub=hub,
        auth=auth,
        state=state,
        metrics=metrics,
        tokens=TokenSealer(session_key),
        resource_url=resource_url,
        hosts=hosts,
        origins=_Origins(origins, scheme, bound),
        ready=ready,
        log=log_line,
        on_shutdown=shutdown,
    )
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        http=guarded_protocol(),
        ws="none",
        lifespan="on",
        access_log=False,
        log_level="warning",
        server_header=False,
        timeout_graceful_shutdown=30,
        ssl_certfile=settings.tls_cert,
        ssl_keyfile=settings.tls_key,
    )
    server = uvicorn.Server(config)

    def reload() -> None:
        from portcullis.policy.load import load_policy

        try:
            fresh = load_policy(policy.source)
            _check(fresh, args.host)
        except Exception as exc:
            log_line(f"SIGHUP: the policy was NOT reloaded: {exc}")
            return
        app.reload(fresh)
        log_line(f"SIGHUP: policy reloaded from {fresh.source} (digest {fresh.digest[:12]})")

    if hasattr(signal, "SIGHUP"):
        loop.add_signal_handler(signal.SIGHUP, reload)

    async def announce() -> None:
        while not server.started:
            await asyncio.sleep(0.02)
        log_line(
            f"listening on {scheme}://{_netloc(args.host, bound['port'])} "
            f"(/mcp, /servers/NAME/mcp; policy {policy.source or 'built-in'})"
        )

    announcing = asyncio.create_task(announce())
    # uvicorn re-raises the SIGTERM/SIGINT it drained on under the handler it found: make that
    # a no-op, so a graceful stop exits 0 instead of dying of the signal after the drain.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: None)
    await server.serve(sockets=[sock])
    announcing.cancel()
    return 0


def _netloc(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


class _Hosts:
    """The Host header values accepted (DNS rebinding): a set that knows the bound port."""

    def __init__(self, settings: ServeSettings, host: str, bound: dict[str, int]) -> None:
        from urllib.parse import urlsplit

        self._bound = bound
        self._fixed = {h.lower() for h in settings.allowed_hosts}
        self._own = {host.lower(), "localhost", "127.0.0.1", "[::1]"}
        if settings.public_url:
            self._fixed.add(urlsplit(settings.public_url).netloc.lower())

    def __contains__(self, value: object) -> bool:
        if not isinstance(value, str) or not value:
            return False
        if value in self._fixed:
            return True
        name, _, port = value.rpartition(":") if not value.endswith("]") else (value, "", "")
        if name in self._fixed:  # an allowed_hosts entry without a port: any port
            return True
        return name in self._own and port == str(self._bound["port"])


class _Origins:
    """The Origin values accepted: the allowlist and this gateway's own loopback origins."""

    def __init__(self, allowed: set[str], scheme: str, bound: dict[str, int]) -> None:
        self._allowed = allowed
        self._scheme = scheme
        self._bound = bound

    def __contains__(self, value: object) -> bool:
        if value in self._allowed:
            return True
        port = self._bound["port"]
        own = {f"{self._scheme}://{h}:{port}" for h in ("localhost", "127.0.0.1", "[::1]")}
        return value in own
