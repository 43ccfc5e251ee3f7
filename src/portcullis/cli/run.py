"""``portcullis run``: guard one stdio MCP server."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Sequence

    from portcullis.approval.broker import Broker
    from portcullis.approval.request import Channel
    from portcullis.gateway.auditor import Auditor
    from portcullis.gateway.session import Session
    from portcullis.policy.compiled import CompiledPolicy, ServerPolicy
    from portcullis.sandbox.launch import Sandboxed

__all__ = ["register"]

_DESCRIPTION = """\
Guard one stdio MCP server. The client talks to portcullis on stdin/stdout; portcullis starts
the server (from `-- CMD ARGS`, or from the policy's command/args/cwd/env for --server) and
relays every message through the policy, writing the audit log."""


def register(sub: Any) -> None:
    """Add the ``run`` command."""
    p = sub.add_parser("run", help="guard one stdio MCP server", description=_DESCRIPTION)
    p.add_argument(
        "--policy",
        metavar="F",
        help="policy file (default: $PORTCULLIS_POLICY, "
        "then ~/.config/portcullis/policy.yaml, else the built-in default)",
    )
    p.add_argument("--server", metavar="NAME", help="the server entry of the policy to apply")
    p.add_argument(
        "--pass-env",
        metavar="VAR",
        action="append",
        default=[],
        help="pass this variable of portcullis's own environment to the server "
        "(repeatable); all others are dropped unless the policy names them",
    )
    p.add_argument(
        "command",
        nargs=argparse.REMAINDER,
        metavar="-- CMD ARGS",
        help="the server command; omit it to launch the policy's command",
    )
    p.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    import getpass
    import secrets

    from portcullis._exceptions import AuditError, ConfigError
    from portcullis._state import install_key, state_dir
    from portcullis.gateway.transports.stdio import StdioGateway, child_env, discard, spawn
    from portcullis.policy.load import load_policy, select_server
    from portcullis.policy.refs import resolve_env

    command: list[str] = args.command[1:] if args.command[:1] == ["--"] else args.command
    policy = load_policy(args.policy)
    server = select_server(policy, args.server, have_command=bool(command))
    where = policy.source or "the built-in default policy"
    if server.unimplemented:
        keys = ", ".join(server.unimplemented)
        raise ConfigError(
            f"{where} configures {keys}, which this version of portcullis does not "
            "enforce yet; refusing to start rather than ignore it"
        )
    launch = server.launch
    if command and launch.env:
        _same_command(server.name, where, command, launch.command, launch.args)
    if not command:
        if launch.url:
            raise ConfigError(
                f'server "{server.name}" is an HTTP upstream ({launch.url}); '
                "stdio `run` needs a command (HTTP upstreams come with `serve`)"
            )
        if not launch.command:
            raise ConfigError(
                f'server "{server.name}" in {where} has no command; give one after `--`'
            )
        command = [launch.command, *launch.args]
    server_env = resolve_env(launch.env)
    env = child_env(server_env, args.pass_env)
    home = state_dir()
    from portcullis.detect.paths import default_protected

    # The policy, the state directory and every MCP client configuration are off limits to
    # every guarded tool, whatever the roots say (and never bound into a sandbox).
    protected = default_protected(policy.source, str(home))
    log_path = Path(policy.audit.path).expanduser() if policy.audit.path else home / "audit.jsonl"
    if policy.audit.path:
        # An audit log kept outside the state directory is just as off limits.
        log_file = log_path.absolute()
        protected += [str(log_file), f"{log_file}.anchor", f"{log_file}.lock"]
    egress = _EgressAudit()
    sandboxed = _sandbox(server, command, server_env, args.pass_env, protected, home, egress)
    unsandboxed = sandboxed if isinstance(sandboxed, str) else None
    jail = sandboxed if not isinstance(sandboxed, str) else None
    cwd = launch.cwd
    argv, server_process_env = command, env
    if jail is not None:
        # The server's working directory is set inside the sandbox (--chdir).
        argv, server_process_env, cwd = jail.plan.argv, jail.plan.env, None
    # Started now, so that its start-up (and the sandbox's) overlaps the gateway's own.
    # With the terminal as an approval channel, the server must not write raw escape
    # sequences to it (it could draw a forged question).
    tty = "tty" in policy.approvals.channels
    proc = spawn(argv, env=server_process_env, cwd=cwd, filter_stderr=tty)
    log = None
    try:
        from portcullis.audit import AuditLog, digest_args
        from portcullis.gateway.auditor import Auditor

        key = install_key(home)
        try:
            log = AuditLog(log_path, key, rotate_bytes=policy.audit.rotate_bytes)
        except AuditError as exc:
            raise ConfigError(f"refusing to start: the audit log cannot be written: {exc}") from exc
        auditor = Auditor(
            log.append,
            lambda value: digest_args(key, value),
            arguments=policy.audit.arguments,
            base={
                "policy": policy.digest,
                "session": secrets.token_hex(8),
                "principal": getpass.getuser(),
                "server": server.name,
            },
        )
        egress.open(auditor)
        if unsandboxed is not None:
            auditor.write(
                direction="c2s",
                method="sandbox",
                decision="flag",
                rule="sandbox.unavailable",
                reason=f"running without the sandbox: {unsandboxed}",
            )
        session = _session(server, policy, command, auditor, key, home, protected)
        gateway = StdioGateway(session, argv, env=server_process_env, cwd=cwd, proc=proc)
    except BaseException:
        discard(proc)
        if jail is not None:
            jail.close()
        if log is not None:
            log.close()
        raise
    try:
        return gateway.run()
    finally:
        if jail is not None:
            jail.close()
        log.close()


def _session(
    server: ServerPolicy,
    policy: CompiledPolicy,
    command: list[str],
    auditor: Auditor,
    key: bytes,
    home: Path,
    protected: list[str],
) -> Session:
    """The relay's decisions: rules, pins, argument guards, approvals."""
    import getpass

    from portcullis.approval.seal import Sealer
    from portcullis.gateway.auditor import observe_warning
    from portcullis.gateway.guards.arguments import ArgumentGuard
    from portcullis.gateway.session import Session

    warning = observe_warning(server)
    if warning is not None:
        _warn(warning)
    pins = None
    if server.pin:
        from portcullis.gateway.guards.pinning import PinGuard
        from portcullis.pins import PinStore, launch_id

        identity = launch_id(server.name, command[0], command[1:], env=server.launch.env.keys())
        pins = PinGuard(PinStore(), server.name, identity, log=_warn)
    return Session(
        server,
        auditor,
        pins=pins,
        arguments=ArgumentGuard(server, protected=protected, cwd=server.launch.cwd),
        broker=_broker(policy.approvals.channels, policy.approvals.timeout_s, home),
        sealer=Sealer(key),
        principal=getpass.getuser(),
    )


class _EgressAudit:
    """Where the egress proxy's decisions are audited; the log opens after the server starts."""

    def __init__(self) -> None:
        import threading

        self._auditor: Auditor | None = None
        self._open = threading.Event()

    def open(self, auditor: Auditor) -> None:
        self._auditor = auditor
        self._open.set()

    def record(self, fields: dict[str, Any]) -> None:
        """Write one decision; raising makes the proxy refuse the connection (fail closed)."""
        from portcullis._exceptions import AuditError

        # A connection made while the gateway is still starting waits for the log.
        if not self._open.wait(10) or self._auditor is None:
            raise AuditError("the audit log is not open, so egress is refused")
        self._auditor.write(direction="c2s", method="sandbox/egress", **fields)


def _same_command(
    name: str, where: str, command: list[str], pinned: str | None, args: Sequence[str]
) -> None:
    """Refuse to hand a policy's ``env`` (its secrets) to a command the client chose.

    Any client configuration, a cloned repository's ``.mcp.json`` included, can say
    ``portcullis run --server NAME -- ANY PROGRAM``: the program must be the one the policy
    names for the server whose environment it would receive.
    """
    from portcullis._exceptions import ConfigError

    if pinned is None:
        raise ConfigError(
            f"servers.{name} in {where} gives its server environment values (env:) but no "
            "command: a client configuration could run any program with them. Put the "
            "server's command and args in the policy (or drop env: and use --pass-env)"
        )
    if command != [pinned, *args]:
        raise ConfigError(
            f"the command after `--` is not the one servers.{name} in {where} names, and that "
            "server's env: is only given to its own command; fix the client configuration or "
            "the policy's command/args"
        )


def _sandbox(
    server: ServerPolicy,
    command: list[str],
    server_env: dict[str, str],
    pass_env: list[str],
    protected: list[str],
    home: Path,
    egress: _EgressAudit,
) -> Sandboxed | str | None:
    """The sandboxed launch; why it runs unsandboxed; or None when no sandbox is asked for."""
    if server.sandbox is None and not server.paths.read_only:
        return None
    import os

    from portcullis.sandbox.launch import prepare

    return prepare(
        server,
        command,
        env=server_env,
        passthrough=os.environ,
        pass_env=pass_env,
        protected=protected,
        state_dir=home,
        log=_warn,
        record=egress.record,
    )


def _broker(channels: tuple[str, ...], timeout_s: float, home: Path) -> Broker:
    """The out-of-band approval channels the policy names (elicitation is the session's)."""
    from portcullis.approval.broker import Broker, Deferred

    found: dict[str, Channel] = {}
    if "console" in channels:
        # Started even when no rule says confirm: its registry of launched servers is what
        # lets every other gateway refuse approvals from processes this server starts.
        found["console"] = Deferred("console", lambda: _console(home))
    if "tty" in channels:
        from portcullis.approval.tty import TtyChannel

        found["tty"] = TtyChannel()
    return Broker(found, timeout_s, order=channels)


def _console(home: Path) -> Channel:
    from portcullis.approval.console import ConsoleChannel
    from portcullis.approval.registry import client_of

    console = ConsoleChannel(home / "approvals", log=_warn, client=client_of())
    console.start()
    return console


def _warn(text: str) -> None:
    import sys

    print(f"portcullis: {text}", file=sys.stderr)
