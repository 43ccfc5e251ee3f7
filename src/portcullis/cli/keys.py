"""``portcullis keys``: create, list and revoke the API keys ``portcullis serve`` accepts."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

__all__ = ["register"]


def register(sub: Any) -> None:
    """Add the ``keys`` command group."""
    p = sub.add_parser(
        "keys",
        help="API keys for portcullis serve",
        description="API keys for `portcullis serve`. The keys file (default "
        "<state dir>/keys.json) keeps only hashes: a key is shown once, when it is created.",
    )
    cmds = p.add_subparsers(dest="keys_command", metavar="SUBCOMMAND")
    cmds.required = True

    def keys_file(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--keys", metavar="F", type=Path, help="keys file (default: <state dir>/keys.json)"
        )

    create = cmds.add_parser(
        "create",
        help="make a key; prints it once, as the last word on stdout",
        description="Make an API key. It is printed once, on stdout, as the last word of the "
        "last line; store it now.",
    )
    create.add_argument("name", metavar="NAME", help="the principal name the key stands for")
    create.add_argument(
        "--server",
        metavar="S",
        action="append",
        default=[],
        help="limit the key to this server (name or glob; repeatable; default: no limit "
        "beyond the identity's)",
    )
    create.add_argument(
        "--replace", action="store_true", help="replace an existing key of the same name"
    )
    keys_file(create)
    create.set_defaults(handler=_create)

    lst = cmds.add_parser("list", help="names, ids, server scopes and creation times")
    lst.add_argument("--json", action="store_true", help="machine-readable output")
    keys_file(lst)
    lst.set_defaults(handler=_list)

    revoke = cmds.add_parser("revoke", help="delete a key (a running serve notices within ~1 s)")
    revoke.add_argument("name", metavar="NAME")
    keys_file(revoke)
    revoke.set_defaults(handler=_revoke)


def _store(args: argparse.Namespace) -> Any:
    from portcullis.serve.keys import KeyStore

    return KeyStore.load(args.keys)


def _create(args: argparse.Namespace) -> int:
    store = _store(args)
    key = store.create(args.name, args.server, replace=args.replace)
    scope = ", ".join(args.server) if args.server else "any server its identity allows"
    print(f"created API key {args.name!r} for {scope} in {store.path}")
    print("store it now: it is not shown again")
    print(key)
    return 0


def _list(args: argparse.Namespace) -> int:
    import json

    entries = _store(args).entries()
    if args.json:
        out = [
            {"name": e.name, "id": e.id, "servers": list(e.servers), "created": e.created}
            for e in entries
        ]
        sys.stdout.write(json.dumps({"keys": out}, indent=2) + "\n")
        return 0
    if not entries:
        print("no API keys")
        return 0
    width = max(len(e.name) for e in entries)
    for e in entries:
        servers = ",".join(e.servers) if e.servers else "*"
        print(f"{e.name:<{width}}  {e.id}  {e.created}  servers: {servers}")
    return 0


def _revoke(args: argparse.Namespace) -> int:
    entry = _store(args).revoke(args.name)
    print(f"revoked API key {entry.name!r} ({entry.id})")
    return 0
