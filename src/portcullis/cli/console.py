"""``portcullis console``: serve the web console on loopback and print its one-time login URL.

Exit status: 0 after SIGINT/SIGTERM; 2 for configuration errors (a bad policy, a non-loopback
``--host`` without TLS, a port in use). Heavy imports (Starlette, Jinja2, uvicorn) happen in the
handler, so other commands never load them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

__all__ = ["register"]

_LOOPBACK_NAMES = frozenset({"localhost"})


def register(sub: Any) -> None:
    """Add the ``console`` command."""
    p = sub.add_parser(
        "console",
        help="a local web console: approvals, definition changes, audit trail, overview",
        description=(
            "Serve the console on 127.0.0.1 (a random free port unless --port) and print "
            "`Console: URL` with a one-time login token. Exit 0 on Ctrl-C/SIGTERM, 2 on errors."
        ),
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default loopback)")
    p.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    p.add_argument("--no-browser", action="store_true", help="do not open a browser")
    p.add_argument("--policy", metavar="F", help="the policy file (default: as `run` finds it)")
    p.add_argument("--log", metavar="F", type=Path, help="the audit log to show")
    p.add_argument("--tls-cert", metavar="F", help="TLS certificate (PEM); needed off loopback")
    p.add_argument("--tls-key", metavar="F", help="TLS private key (PEM)")
    p.set_defaults(handler=_console)


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address or ``localhost``."""
    import ipaddress

    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _check(args: argparse.Namespace) -> None:
    from portcullis._exceptions import ConfigError

    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port must be 0..65535, not {args.port}")
    if bool(args.tls_cert) != bool(args.tls_key):
        raise ConfigError("--tls-cert and --tls-key go together")
    if not is_loopback(args.host) and not args.tls_cert:
        raise ConfigError(
            f"refusing to listen on {args.host} without TLS: the console approves calls and "
            "re-pins tools; pass --tls-cert F --tls-key F, or keep the default 127.0.0.1"
        )
    for name in ("tls_cert", "tls_key"):
        value = getattr(args, name)
        if value and not Path(value).expanduser().is_file():
            raise ConfigError(f"--{name.replace('_', '-')} {value}: no such file")


def _console(args: argparse.Namespace) -> int:
    import asyncio

    _check(args)
    try:
        import uvloop

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:  # pragma: no cover - Windows
        runner = asyncio.Runner()
    with runner:
        return runner.run(_main(args))


async def _main(args: argparse.Namespace) -> int:
    import asyncio
    import signal

    import uvicorn

    from portcullis._state import state_dir
    from portcullis.approval.console import queue_dir
    from portcullis.audit import default_log_path
    from portcullis.console.app import ConsoleConfig, build_app
    from portcullis.policy.load import load_policy
    from portcullis.serve.listen import bind, guarded_protocol

    policy = load_policy(args.policy)
    state = state_dir()
    if args.log is not None:
        log = Path(args.log).expanduser()
    elif policy.audit.path:
        log = Path(policy.audit.path).expanduser()
    else:
        log = default_log_path()
    sock = bind(args.host, args.port)
    port = sock.getsockname()[1]
    server: uvicorn.Server | None = None
    config = ConsoleConfig(
        policy=policy,
        state=state,
        log=log,
        queue=queue_dir(),
        host=args.host,
        port=port,
        tls=bool(args.tls_cert),
        stopping=lambda: server is not None and server.should_exit,
    )
    server = uvicorn.Server(
        uvicorn.Config(
            build_app(config),
            http=guarded_protocol(),
            ws="none",
            lifespan="off",
            access_log=False,
            log_level="warning",
            server_header=False,
            timeout_graceful_shutdown=3,
            ssl_certfile=args.tls_cert,
            ssl_keyfile=args.tls_key,
        )
    )

    async def announce() -> None:
        assert server is not None
        while not server.started:
            await asyncio.sleep(0.02)
        print(f"Console: {config.url}", flush=True)
        if config.exposed:
            print(
                f"portcullis: the console is reachable beyond this machine on {args.host}",
                file=sys.stderr,
                flush=True,
            )
        if not args.no_browser:
            await asyncio.to_thread(_open, config.url)

    announcing = asyncio.create_task(announce())
    # uvicorn re-raises the signal it stopped on under the handler it found: make that a
    # no-op, so Ctrl-C or SIGTERM ends with status 0.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: None)
    try:
        await server.serve(sockets=[sock])
    finally:
        announcing.cancel()
        sock.close()
    return 0


def _open(url: str) -> None:
    import webbrowser

    try:
        webbrowser.open(url)
    except Exception as exc:  # no browser is no error: the URL is printed
        print(f"portcullis: could not open a browser ({exc}); open the URL above", file=sys.stderr)
