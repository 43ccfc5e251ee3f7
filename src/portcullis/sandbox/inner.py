"""The launcher that runs inside the sandbox, between bubblewrap and the server.

It adds the layers bubblewrap cannot: Landlock (the filesystem rules again, enforced by the
kernel on every path lookup, so a bind mistake is not the only wall) and a seccomp filter (the
syscalls an MCP server never needs), then starts the egress forwarder when the policy allows
hosts (after the layers, so it runs under them too), and replaces itself with the server. A
layer the kernel lacks is skipped; a layer that fails is fatal (the server is not started).

It runs in a fresh ``python -I -S`` on every start, so it imports only what it must: no
``portcullis`` package (see :data:`BOOTSTRAP`), no ``json`` or ``typing`` (milliseconds each);
its options are plain arguments.
"""

from __future__ import annotations

import os
import sys

# Not `from typing import TYPE_CHECKING`: type checkers treat any name TYPE_CHECKING as true.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["BOOTSTRAP", "command", "main"]

# Run with ``python -I -S -c BOOTSTRAP SANDBOX_DIR OPTIONS -- CMD…``: registers empty parent
# packages so that importing portcullis.sandbox.inner does not run portcullis/__init__.py (which
# loads the gateway's dependencies), then hands over to main().
BOOTSTRAP = (
    "import sys,types\n"
    "d=sys.argv[1]\n"
    "for n in ('portcullis','portcullis.sandbox'):\n"
    " m=types.ModuleType(n);m.__path__=[d];sys.modules[n]=m\n"
    "from portcullis.sandbox.inner import main\n"
    "main(sys.argv[2:])\n"
)


def command(
    python: str,
    sandbox_dir: str,
    *,
    read_only: Sequence[str],
    read_write: Sequence[str],
    forward: tuple[int, str] | None = None,
) -> list[str]:
    """The launcher's command prefix (the server's command follows it)."""
    argv = [python, "-I", "-S", "-c", BOOTSTRAP, sandbox_dir, "--landlock", "--seccomp"]
    for path in read_only:
        argv += ["--ro", path]
    for path in read_write:
        argv += ["--rw", path]
    if forward is not None:
        argv += ["--forward", str(forward[0]), forward[1]]
    return [*argv, "--"]


def _fail(message: str) -> None:
    os.write(2, f"portcullis sandbox: {message}; the server was not started\n".encode())
    os._exit(126)


def main(args: Sequence[str]) -> None:
    """``OPTIONS -- CMD…``: apply the layers the options name, then exec CMD."""
    read_only: list[str] = []
    read_write: list[str] = []
    forward: tuple[int, str] | None = None
    layers: set[str] = set()
    i = 0
    while i < len(args) and args[i] != "--":
        option = args[i]
        if option in ("--ro", "--rw") and i + 1 < len(args):
            (read_only if option == "--ro" else read_write).append(args[i + 1])
            i += 2
        elif option == "--forward" and i + 2 < len(args):
            forward = (int(args[i + 1]), args[i + 2])
            i += 3
        elif option in ("--landlock", "--seccomp"):
            layers.add(option)
            i += 1
        else:
            _fail(f"unknown launcher option {option!r}")
    argv = list(args[i + 1 :])
    if not argv:
        _fail("no command after --")
    if "--landlock" in layers:
        from portcullis.sandbox import landlock

        try:
            landlock.restrict(read_only, read_write)
        except OSError as exc:
            _fail(f"Landlock failed: {exc}")
    if "--seccomp" in layers:
        from portcullis.sandbox import seccomp

        try:
            seccomp.install()
        except OSError as exc:
            _fail(f"seccomp failed: {exc}")
    if forward is not None:
        from portcullis.sandbox import forwarder

        forwarder.start(*forward)
    sys.stdout.flush()
    # Python ignores SIGPIPE and exec keeps an ignored signal ignored: give the server the
    # default its runtime expects (through libc: the signal module imports enum, ~3 ms).
    import ctypes

    ctypes.CDLL(None).signal(13, 0)  # SIGPIPE, SIG_DFL
    try:
        os.execvp(argv[0], argv)  # noqa: S606 - the server's own command, as the policy says
    except OSError as exc:
        _fail(f"cannot start {argv[0]}: {exc.strerror or exc}")
