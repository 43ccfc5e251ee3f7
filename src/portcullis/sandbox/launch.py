"""From a server's policy to the sandboxed command ``run`` starts (or a refusal to start).

``sandbox.required`` (the default once ``sandbox:`` is written) turns an unavailable sandbox
into a refusal to start that says why and how to fix it; ``required: false`` runs the server
unsandboxed and says so on stderr and in the audit log.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import msgspec

from portcullis._exceptions import ConfigError
from portcullis.policy.compiled import ServerPolicy
from portcullis.sandbox import detect, inner, profiles
from portcullis.sandbox.plan import (
    PROXY_PORT,
    PROXY_SOCKET,
    SANDBOX_HOME,
    SANDBOX_TMP,
    Plan,
    build,
)

__all__ = ["Sandboxed", "prepare"]


class Sandboxed(msgspec.Struct):
    """A plan ready to start, and what to stop when the server ends."""

    plan: Plan
    python: str  # the interpreter the launcher runs inside
    proxy: Any = None  # the EgressProxy, when network is allow_hosts
    proxy_dir: str | None = None

    def close(self) -> None:
        """Stop the egress proxy and remove its socket."""
        if self.proxy is not None:
            self.proxy.close()
        if self.proxy_dir is not None:
            # Its own private directory: whatever is left there goes, and a failure to tidy up
            # must not hide the server's exit status.
            shutil.rmtree(self.proxy_dir, ignore_errors=True)


def prepare(
    server: ServerPolicy,
    command: Sequence[str],
    *,
    env: Mapping[str, str],
    passthrough: Mapping[str, str],
    pass_env: Sequence[str] = (),
    protected: Sequence[str],
    state_dir: Path,
    log: Callable[[str], None],
    record: Callable[[dict[str, Any]], None] | None = None,
) -> Sandboxed | str | None:
    """The sandboxed launch of ``command``, or why it runs unsandboxed, or None (no sandbox).

    Raises ConfigError when the server must not start.
    """
    settings = server.sandbox
    if settings is None:
        if server.paths.read_only:
            raise ConfigError(
                f'server "{server.name}": paths.read_only needs `sandbox:` (read-only roots are '
                "a sandbox bind); add a sandbox block or remove read_only"
            )
        return None
    why = detect.unavailable(state_dir)
    if why is not None:
        if settings.required:
            raise ConfigError(
                f'server "{server.name}" must run sandboxed, and the sandbox is not available: '
                f"{why}. Refusing to start (sandbox.required; set it to false to run "
                "unsandboxed with a warning)"
            )
        log(f'WARNING: server "{server.name}" runs WITHOUT the sandbox: {why}')
        return why
    lookup = {**passthrough, **env}
    runtime = profiles.runtime(settings.profile, command, lookup)
    # The launcher inside needs this interpreter and the sandbox modules, read-only.
    here = str(Path(__file__).resolve().parent)
    runtime.read_only = profiles.outermost(
        [
            *runtime.read_only,
            *profiles.python_dirs(sys.executable),
            os.path.realpath(sys.executable),
            here,
        ]
    )
    # The gateway's own code, read-only on top of any writable bind that holds it: a server
    # must not rewrite what runs unsandboxed at the next start.
    package = str(Path(__file__).resolve().parents[1])
    runtime.read_only = profiles.outermost([*runtime.read_only, package])
    proxy = proxy_dir = proxy_socket = None
    if settings.network == "allow_hosts":
        from portcullis.sandbox.egress import EgressProxy

        urls = server.urls
        proxy = EgressProxy(
            urls.allow_hosts if urls else (),
            deny_private=urls.deny_private if urls else True,
            log=log,
            record=record,
        )
        proxy_dir = tempfile.mkdtemp(prefix="portcullis-egress-")
        proxy_socket = os.path.join(proxy_dir, "egress.sock")
        proxy.start(Path(proxy_socket))
    names = [*settings.env, *pass_env]
    allowed = {k: passthrough[k] for k in names if k in passthrough}
    plan = build(
        settings,
        runtime,
        bwrap=detect.find_bwrap() or "bwrap",
        roots=server.roots,
        roots_read_only=server.paths.read_only,
        env=env,
        passthrough=allowed,
        protected=protected,
        cwd=server.launch.cwd,
        home=passthrough.get("HOME") or os.path.expanduser("~"),
        proxy_socket=proxy_socket,
    )
    python = os.path.realpath(sys.executable)
    launcher = inner.command(
        python,
        here,
        read_only=[
            *(b.dest for b in plan.binds if b.kind in ("ro", "mask-file", "mask-dir")),
            "/proc",
            "/etc",
        ],
        read_write=[
            *(b.dest for b in plan.binds if b.kind == "rw"),
            SANDBOX_TMP,
            SANDBOX_HOME,
            "/dev",
        ],
        forward=(PROXY_PORT, PROXY_SOCKET) if settings.network == "allow_hosts" else None,
    )
    plan.argv[plan.command_at : plan.command_at] = launcher
    plan.command_at += len(launcher)
    return Sandboxed(plan=plan, python=python, proxy=proxy, proxy_dir=proxy_dir)
