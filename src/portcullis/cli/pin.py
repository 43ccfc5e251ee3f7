"""``portcullis pin``: show pins, diff two tool lists or launch entries, approve changes."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

__all__ = ["register"]


def register(sub: Any) -> None:
    """Add the ``pin`` command group."""
    p = sub.add_parser(
        "pin",
        help="show, diff and approve pinned tool definitions",
        description="Pinned definitions (rug-pull protection). See docs/pinning.md.",
    )
    cmds = p.add_subparsers(dest="pin_command", metavar="SUBCOMMAND")
    cmds.required = True

    show = cmds.add_parser("show", help="pins and pending changes per server")
    show.add_argument("--server", metavar="NAME")
    show.add_argument("--json", action="store_true", help="machine-readable output")
    show.set_defaults(handler=_show)

    diff = cmds.add_parser(
        "diff",
        help="diff two tools/list results or two server launch entries (JSON files)",
        description="Exit 0 same, 1 changed, 2 error.",
    )
    diff.add_argument("approved", metavar="APPROVED")
    diff.add_argument("current", metavar="CURRENT")
    diff.set_defaults(handler=_diff)

    approve = cmds.add_parser("approve", help="approve pending definitions of one server")
    approve.add_argument("--server", metavar="NAME", required=True)
    approve.add_argument("names", metavar="TOOL", nargs="*")
    approve.add_argument("--all", action="store_true", help="approve everything pending")
    approve.set_defaults(handler=_approve)


def _show(args: argparse.Namespace) -> int:
    import json

    from portcullis.pins.store import PinStore

    entries = PinStore().entries(args.server)
    if args.json:
        out = [
            {
                "server": e.server,
                "file": str(e.path),
                "launch": e.launch.to_json() if e.launch else None,
                "version_changes": _launch_changes(e),
                "pins": e.hashes,
                "pending": {
                    kind: {key: e.reasons[kind][key] for key in sorted(defs)}
                    for kind, defs in e.pending.items()
                },
                "updated": e.updated,
            }
            for e in entries
        ]
        sys.stdout.write(json.dumps({"servers": out}, indent=2) + "\n")
        return 0
    if not entries:
        which = f" for server {args.server!r}" if args.server else ""
        print(f"no pins{which}")
        return 0
    from portcullis.pins.diff import diff_definitions

    for e in entries:
        launch = e.launch.to_json() if e.launch else {}
        where = launch.get("url") or " ".join([launch.get("command") or "", *launch["args"]])
        print(f"{e.server}: {_printable(where)}  ({e.path.name})")
        for change in _launch_changes(e):
            print(f"  launch changed since approval: {_printable(change)}")
        for kind in sorted(e.hashes):
            for key, digest in sorted(e.hashes[kind].items()):
                print(f"  pinned   {kind:<17} {_printable(key)}  {digest[:19]}")
        for kind in sorted(e.pending):
            for key, definition in sorted(e.pending[kind].items()):
                reason = e.reasons[kind][key]
                print(f"  PENDING  {kind:<17} {_printable(key)}  ({reason})")
                old = e.pins.get(kind, {})
                text = diff_definitions({key: old[key]} if key in old else {}, {key: definition})
                sys.stdout.write("".join(f"    {line}\n" for line in text.splitlines()))
        if e.pending:
            print(f"  approve with: portcullis pin approve --server {e.server} NAME… | --all")
    return 0


def _launch_changes(entry: Any) -> list[str]:
    from portcullis.pins.store import version_changes

    if entry.launch is None or entry.approved_launch is None:
        return []
    changes: list[str] = version_changes(entry.approved_launch, entry.launch)
    return changes


def _diff(args: argparse.Namespace) -> int:
    from portcullis._exceptions import ConfigError
    from portcullis.pins.diff import diff_launch, diff_tool_lists, is_launch_entry

    a, b = _load(args.approved), _load(args.current)
    try:
        if is_launch_entry(a) and is_launch_entry(b):
            text, changed = diff_launch(a, b)
        elif is_launch_entry(a) or is_launch_entry(b):
            raise ConfigError("cannot diff a launch entry against a tool list")
        else:
            text, changed = diff_tool_lists(a, b)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    sys.stdout.write(text if changed else "no changes\n")
    return 1 if changed else 0


def _load(name: str) -> Any:
    from portcullis._exceptions import ConfigError
    from portcullis.gateway.frames import StrictJSONError, loads_strict

    try:
        raw = Path(name).read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {name}: {exc.strerror}") from None
    try:
        return loads_strict(raw)
    except StrictJSONError as exc:
        raise ConfigError(f"{name} is not usable JSON: {exc}") from None


def _approve(args: argparse.Namespace) -> int:
    from portcullis._exceptions import ConfigError
    from portcullis.pins.store import NotPendingError, PinStore

    if args.all == bool(args.names):
        raise ConfigError("name the definitions to approve, or pass --all (not both)")
    try:
        approved = PinStore().approve(args.server, "all" if args.all else args.names)
    except NotPendingError as exc:
        print(f"portcullis: {exc}", file=sys.stderr)
        return 1
    if not approved:
        print(f"nothing pending for server {args.server!r}")
    for kind, key in approved:
        print(f"approved {kind} {_printable(key)}")
    return 0


def _printable(text: str) -> str:
    # Server-chosen names reach the terminal; escape anything that could steer it.
    import unicodedata

    return "".join(
        f"\\u{ord(c):04x}" if unicodedata.category(c)[0] in "CZ" and c != " " else c for c in text
    )
