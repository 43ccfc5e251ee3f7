"""``portcullis approvals``: list and answer the calls running gateways hold for a person.

Exit status: 0 done; 1 unknown or expired id, or a wrong code; 2 errors (refused, bad usage,
no code). Codes are shown only on a terminal and never in ``--json``: a script must be given
the code by a person who read it with the request.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["register"]

_POLL_S = 0.5


def register(sub: Any) -> None:
    """Add the ``approvals`` command group."""
    p = sub.add_parser(
        "approvals",
        help="list and answer pending approvals (the console queue)",
        description=(
            "The console approval queue of every running gateway. Without a subcommand, on a "
            "terminal: ask about each new request as it arrives; otherwise: list. "
            "Exit 0 done, 1 unknown/expired id or wrong code, 2 error."
        ),
    )
    p.add_argument("--json", action="store_true", help="machine-readable output (no codes)")
    p.set_defaults(handler=_default)
    cmds = p.add_subparsers(dest="approvals_command", metavar="SUBCOMMAND")

    ls = cmds.add_parser("list", help="the pending requests (codes only on a terminal)")
    ls.add_argument("--json", action="store_true", default=argparse.SUPPRESS)
    ls.set_defaults(handler=_list)

    for decision in ("approve", "deny"):
        cmd = cmds.add_parser(decision, help=f"{decision} one request")
        cmd.add_argument("id", metavar="ID")
        cmd.add_argument(
            "--code",
            metavar="CODE",
            help="the short code shown with the request (asked if omitted)",
        )
        if decision == "approve":
            cmd.add_argument(
                "--session",
                action="store_true",
                help="approve for the rest of the session (when the policy allows it)",
            )
        cmd.add_argument("--json", action="store_true", default=argparse.SUPPRESS)
        cmd.set_defaults(handler=_answer, decision=decision)


def _queue() -> Path:
    from portcullis._state import state_dir

    # Listing must not create the state directory; no directory means nothing pending.
    return state_dir(create=False) / "approvals"


def _interactive() -> bool:
    return sys.stdin.isatty() and sys.stdout.isatty()


def _fetch() -> list[dict[str, Any]]:
    from portcullis._exceptions import ApprovalError, ConfigError
    from portcullis.approval.console import pending

    try:
        return pending(_queue())
    except ApprovalError as exc:
        raise ConfigError(str(exc)) from None


def _default(args: argparse.Namespace) -> int:
    if args.json or not _interactive():
        return _list(args)
    return _watch()


def _list(args: argparse.Namespace) -> int:
    import json

    entries = _fetch()
    if args.json:
        clean = [{k: v for k, v in e.items() if k != "code"} for e in entries]
        sys.stdout.write(json.dumps({"pending": clean}, indent=2) + "\n")
        return 0
    if not entries:
        print("no pending approvals")
        return 0
    show_codes = sys.stdout.isatty()
    for entry in entries:
        print(_describe(entry, show_codes))
        print()
    if not show_codes:
        print("(codes are shown only on a terminal: run `portcullis approvals` there)")
    return 0


def _describe(entry: dict[str, Any], show_code: bool) -> str:
    import time

    from portcullis.approval.request import visible

    left = max(0, int(float(entry.get("expires") or 0) - time.time()))
    lines = [f"{visible(str(entry['id']))}  (expires in {left} s)"]
    lines += [f"  {line}" for line in _summary(entry).splitlines()]
    if entry.get("session_ok"):
        lines.append("  may be approved for the rest of the session (--session)")
    code = entry.get("code")
    if show_code and isinstance(code, str):
        lines.append(f"  code: {visible(code)}")
    elif isinstance(entry.get("codes_withheld"), str):
        lines.append(f"  code withheld: {visible(entry['codes_withheld'])}")
    return "\n".join(lines)


def _summary(entry: dict[str, Any]) -> str:
    import json

    import msgspec

    from portcullis.approval.request import ApprovalRequest, visible

    try:
        request = msgspec.convert({**entry, "code": ""}, ApprovalRequest)
    except msgspec.ValidationError:
        return visible(json.dumps(entry, ensure_ascii=False))
    return request.summary()


def _answer(args: argparse.Namespace) -> int:
    from portcullis._exceptions import ApprovalError, ConfigError
    from portcullis.approval.console import answer

    code = args.code
    if code is None:
        if not _interactive():
            raise ConfigError(
                "no --code given: the code is shown with the request by "
                "`portcullis approvals` on a terminal"
            )
        try:
            code = input("code shown with the request: ").strip()
        except EOFError:
            code = ""
        if not code:
            raise ConfigError("no code given")
    for_session = bool(getattr(args, "session", False))
    try:
        response = answer(_queue(), args.id, code, args.decision, for_session)
    except ApprovalError as exc:
        print(f"portcullis: {exc}", file=sys.stderr)
        return 2
    return _report(response, args.id, getattr(args, "json", False))


def _report(response: dict[str, Any], request_id: str, as_json: bool) -> int:
    import json

    from portcullis.approval.request import visible

    if as_json:
        sys.stdout.write(json.dumps(response) + "\n")
    if response.get("ok") is True:
        if not as_json:
            print(f"{visible(str(response.get('outcome')))} {visible(request_id)}")
        return 0
    status = response.get("status")
    if not as_json:
        print(f"portcullis: {visible(str(response.get('error')))}", file=sys.stderr)
    return 1 if status in ("unknown", "bad-code") else 2


def _watch() -> int:
    """Ask about each new request as it arrives, until Ctrl-C or end of input."""
    import time

    from portcullis._exceptions import ApprovalError
    from portcullis.approval.console import answer

    seen: set[str] = set()
    print("waiting for approval requests (Ctrl-C to stop)")
    try:
        while True:
            for entry in _fetch():
                request_id = str(entry["id"])
                if request_id in seen:
                    continue
                seen.add(request_id)
                print()
                print(_describe(entry, show_code=True))
                code = entry.get("code")
                if not isinstance(code, str):
                    continue
                choices = "[a]pprove" + (" / [s]ession" if entry.get("session_ok") else "")
                word = input(f"{choices} / [d]eny / [Enter] skip: ").strip().lower()
                if word in ("a", "approve"):
                    decision, for_session = "approve", False
                elif word in ("s", "session") and entry.get("session_ok"):
                    decision, for_session = "approve", True
                elif word in ("d", "deny"):
                    decision, for_session = "deny", False
                else:
                    print("skipped")
                    continue
                try:
                    response = answer(_queue(), request_id, code, decision, for_session)
                except ApprovalError as exc:
                    print(f"portcullis: {exc}", file=sys.stderr)
                    continue
                _report(response, request_id, as_json=False)
            time.sleep(_POLL_S)
    except (KeyboardInterrupt, EOFError):
        print()
        return 0
