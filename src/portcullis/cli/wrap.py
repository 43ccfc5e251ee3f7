"""``portcullis wrap`` / ``unwrap``: route a client's servers through the gateway."""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["register"]

_WRAP = """\
Rewrite a client's configuration so each chosen stdio server runs through `portcullis run`,
with a generated least-privilege starting policy (write tools under confirm, filesystem roots
narrowed, plaintext secrets moved to the OS keyring). Shows a diff first; keeps a backup.
CLIENT is a client id (claude-desktop, cursor, vscode, …); FILE a configuration file; with
neither, every configuration found. Exit 0 done, 1 nothing to wrap or refused, 2 error."""

_UNWRAP = """\
Undo `portcullis wrap`: restore each wrapped server's own command and arguments, keeping every
other edit made since. The policy file is not changed. Exit 0 done, 1 nothing to unwrap or
refused, 2 error."""


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("target", nargs="?", metavar="CLIENT|FILE", help="a client id or a file")
    p.add_argument(
        "--server",
        metavar="NAME",
        action="extend",
        nargs="+",
        dest="servers",
        help="only these servers (repeatable)",
    )
    p.add_argument("--dry-run", action="store_true", help="show the changes, write nothing")
    p.add_argument("--yes", "-y", action="store_true", help="write without asking")


def register(sub: Any) -> None:
    """Add the ``wrap`` and ``unwrap`` commands."""
    wrap = sub.add_parser(
        "wrap", help="route a client's servers through the gateway", description=_WRAP
    )
    _common(wrap)
    wrap.add_argument(
        "--policy",
        metavar="F",
        help="the policy file to add server blocks to (default: $PORTCULLIS_POLICY, "
        "else ~/.config/portcullis/policy.yaml, created if missing)",
    )
    wrap.set_defaults(handler=_wrap)
    unwrap = sub.add_parser(
        "unwrap", help="undo wrap: servers run directly again", description=_UNWRAP
    )
    _common(unwrap)
    secrets = unwrap.add_mutually_exclusive_group()
    secrets.add_argument(
        "--restore-secrets",
        action="store_true",
        help="write secrets wrap moved to the keyring back into the client file",
    )
    secrets.add_argument(
        "--leave-secrets",
        action="store_true",
        help="unwrap even servers whose secrets wrap moved to the keyring (they stay there)",
    )
    unwrap.set_defaults(handler=_unwrap)


def _request(args: argparse.Namespace) -> Any:
    from portcullis.wrap.command import Request

    return Request(
        target=args.target,
        servers=frozenset(args.servers) if args.servers else None,
        dry_run=args.dry_run,
        yes=args.yes,
        policy=getattr(args, "policy", None),
        restore_secrets=getattr(args, "restore_secrets", False),
        leave_secrets=getattr(args, "leave_secrets", False),
    )


def _wrap(args: argparse.Namespace) -> int:
    from portcullis.wrap.command import run_wrap

    return run_wrap(_request(args))


def _unwrap(args: argparse.Namespace) -> int:
    from portcullis.wrap.command import run_unwrap

    return run_unwrap(_request(args))
