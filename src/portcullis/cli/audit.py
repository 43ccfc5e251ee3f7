"""``portcullis audit verify|tail|query``: check and read the audit log."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = ["audit_key", "register"]


def register(sub: Any) -> None:
    """Add the ``audit`` command and its sub-commands."""
    p = sub.add_parser(
        "audit",
        help="verify, tail or query the audit log",
        description="Check the audit log's HMAC chain, or read it. The log defaults to "
        "<state dir>/audit.jsonl ($PORTCULLIS_HOME or ~/.local/state/portcullis).",
    )
    commands = p.add_subparsers(dest="audit_command", metavar="SUBCOMMAND")
    commands.required = True

    v = commands.add_parser(
        "verify",
        help="check every record, the chain and the anchor",
        description="Check every MAC, the seq and prev links, and the head against the anchor. "
        "Exit 0 intact, 1 broken (the first bad record is named on stderr), 2 no log or "
        "unusable arguments.",
    )
    _log_option(v)
    v.add_argument(
        "--key-file",
        metavar="F",
        type=Path,
        help="the install key of the machine that wrote the log (default: this install's)",
    )
    v.add_argument("--json", action="store_true", help="print the report as JSON")
    v.set_defaults(handler=_verify)

    t = commands.add_parser(
        "tail",
        help="print the last records, optionally following new ones",
        description="Print the last N records as JSON Lines; --follow keeps printing new "
        "records (across rotations) until Ctrl-C.",
    )
    _log_option(t)
    t.add_argument("-n", "--lines", type=int, default=10, metavar="N", help="default 10")
    t.add_argument("-f", "--follow", action="store_true", help="keep printing new records")
    t.set_defaults(handler=_tail)

    q = commands.add_parser(
        "query",
        help="print the records that match filters",
        description="Print matching records as JSON Lines (or a JSON array with --json). "
        "Field filters are case-sensitive globs (search_*); --since is inclusive, --until "
        "exclusive (RFC 3339; no offset means UTC).",
    )
    _log_option(q)
    for name in ("server", "tool", "decision", "rule", "principal", "method"):
        q.add_argument(f"--{name}", metavar=name[0].upper())
    q.add_argument("--since", metavar="TS")
    q.add_argument("--until", metavar="TS")
    q.add_argument("--json", action="store_true", help="print one JSON array")
    q.set_defaults(handler=_query)


def _log_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--log",
        metavar="F",
        type=Path,
        help="the log (default: the policy's audit.path, else <state dir>/audit.jsonl)",
    )
    p.add_argument(
        "--policy",
        metavar="F",
        help="the policy whose audit.path names the log (default: the policy `run` would use)",
    )


def _log_path(args: argparse.Namespace) -> Path:
    from portcullis._exceptions import ConfigError
    from portcullis.audit import anchor_path, default_log_path, log_files
    from portcullis.policy import load_policy

    if args.log is not None:
        path: Path = args.log.expanduser()
    else:
        # The same log `run` writes: the policy may have moved it.
        configured = load_policy(args.policy).audit.path
        path = Path(configured).expanduser() if configured else default_log_path()
    if not log_files(path) and not anchor_path(path).exists():
        raise ConfigError(f"no audit log at {path}")
    return path


def audit_key(args: argparse.Namespace) -> bytes:
    """The install key that MACs the log: ``--key-file``, else this install's (never a new one)."""
    from portcullis._exceptions import ConfigError
    from portcullis._state import _KEY_FILE, install_key, state_dir

    if args.key_file is None:
        directory = state_dir()
        if not (directory / _KEY_FILE).exists():
            # install_key() would create a fresh key, and every MAC would then "fail".
            raise ConfigError(f"no install key in {directory}; pass --key-file")
        return install_key(directory)
    key_file: Path = args.key_file
    try:
        data = key_file.expanduser().read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read the key file {args.key_file}: {exc.strerror}") from exc
    text = data.strip()
    if len(text) == 64:
        try:
            return bytes.fromhex(text.decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            pass
    if len(data) != 32:
        raise ConfigError(
            f"key file {args.key_file} holds {len(data)} bytes; expected a 32-byte install key "
            "(or its 64 hex digits)"
        )
    return data


def _verify(args: argparse.Namespace) -> int:
    from portcullis._exceptions import AuditError, ConfigError
    from portcullis.audit import verify

    path = _log_path(args)
    key = audit_key(args)
    try:
        report = verify(path, key)
    except AuditError as exc:
        raise ConfigError(str(exc)) from exc  # the log could not be checked at all: exit 2
    if args.json:
        import json
        from dataclasses import asdict

        print(json.dumps(asdict(report)))
    elif report.ok:
        print(f"OK {report.records} records: {report.reason}")
    else:
        where = Path(report.file).name if report.file else str(path)
        if report.line is not None:
            where += f" line {report.line}"
        at = f"at seq {report.first_bad}" if report.first_bad is not None else f"({report.reason})"
        print(f"BROKEN {at} ({where}); {report.records} records verified")
    if not report.ok:
        print(f"portcullis: {report}", file=sys.stderr)
    return 0 if report.ok else 1


def _tail(args: argparse.Namespace) -> int:
    from portcullis._exceptions import ConfigError
    from portcullis.audit import follow, tail

    if args.lines < 0:
        raise ConfigError(f"-n must be 0 or more, not {args.lines}")
    path = _log_path(args)
    if args.follow:
        return _print_lines(follow(path, args.lines), flush=True)
    return _print_lines(tail(path, args.lines))


def _query(args: argparse.Namespace) -> int:
    from portcullis._exceptions import ConfigError
    from portcullis.audit import parse_time, query

    for name in ("since", "until"):
        value = getattr(args, name)
        if value is not None:
            try:
                parse_time(value)
            except ValueError:
                raise ConfigError(f"--{name} {value!r} is not an RFC 3339 time") from None
    path = _log_path(args)
    errors: list[str] = []
    records = query(
        path,
        server=args.server,
        tool=args.tool,
        decision=args.decision,
        rule=args.rule,
        principal=args.principal,
        method=args.method,
        since=args.since,
        until=args.until,
        errors=errors,
    )
    status = _print_array(records) if args.json else _print_lines(records)
    if errors:
        print(
            f"portcullis: skipped {len(errors)} unreadable line(s), first {errors[0]}; "
            "run: portcullis audit verify",
            file=sys.stderr,
        )
    return status


def _print_lines(records: Iterable[dict[str, Any]], *, flush: bool = False) -> int:
    import msgspec

    out = sys.stdout.buffer
    try:
        for rec in records:
            out.write(msgspec.json.encode(rec, order="sorted") + b"\n")
            if flush:
                out.flush()
        out.flush()
    except BrokenPipeError:
        _quiet_stdout()
    return 0


def _print_array(records: Iterable[dict[str, Any]]) -> int:
    import msgspec

    out = sys.stdout.buffer
    try:
        out.write(b"[")
        for i, rec in enumerate(records):
            out.write((b",\n" if i else b"\n") + msgspec.json.encode(rec, order="sorted"))
        out.write(b"\n]\n")
        out.flush()
    except BrokenPipeError:
        _quiet_stdout()
    return 0


def _quiet_stdout() -> None:
    # The reader went away (`| head`): point stdout at /dev/null so the interpreter's final
    # flush does not print a BrokenPipeError traceback.
    import os

    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
