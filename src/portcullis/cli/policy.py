"""``portcullis policy``: validate, schema, suggest (learn from the audit log), test (replay it).

The rollout these serve (observe, suggest, review, test, enforce) is in docs/rollout.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["register"]


def register(subparsers: Any) -> None:
    """Add the ``policy`` command and its sub-commands to the top-level parser."""
    parser = subparsers.add_parser(
        "policy", help="policy tooling", description="Validate a policy file or print its schema."
    )
    sub = parser.add_subparsers(dest="policy_command", metavar="SUBCOMMAND")
    sub.required = True

    validate = sub.add_parser(
        "validate",
        help="check a policy file (exit 0 ok, 2 invalid)",
        description="Check a policy file: exit 0 when valid, 2 (with file:line: key: reason on "
        "stderr) when not. Keys this version validates but cannot enforce yet are "
        "listed as a warning.",
    )
    validate.add_argument("file", metavar="F", help="the policy file")
    validate.set_defaults(handler=_validate)

    schema = sub.add_parser(
        "schema",
        help="print the policy file's JSON Schema",
        description="Print the JSON Schema of the policy file, for editors.",
    )
    schema.set_defaults(handler=_schema)

    suggest = sub.add_parser(
        "suggest",
        help="learn a least-privilege policy from the audit log",
        description="Print a policy learned from the audit log (best recorded in observe mode): "
        "tools used are allowed (confirm when they write, delete, send or execute), tools "
        "listed but unused are denied, path roots, SQL tables and URL hosts are what was used. "
        "Only calls that were not would-be denials and carried no injection finding teach. "
        "Every line has a comment saying why. With --policy, the launch keys and everything "
        "not learned are kept, and the changes are listed on stderr. The log's HMAC chain is "
        "verified first; a broken or unverifiable log is refused (exit 2) unless "
        "--allow-unverified. Exit 0, 2 on errors.",
    )
    suggest.add_argument("--from-audit", metavar="LOG", required=True, help="the audit log")
    suggest.add_argument("--server", metavar="NAME", help="learn only this server")
    suggest.add_argument(
        "--since", metavar="DATE", help="ignore calls before this RFC 3339 time or date"
    )
    suggest.add_argument(
        "--policy", metavar="CURRENT", help="the current policy: kept keys and the diff"
    )
    suggest.add_argument("--output", metavar="F", help="write the policy here (default: stdout)")
    _verify_options(suggest)
    suggest.set_defaults(handler=_suggest)

    test = sub.add_parser(
        "test",
        help="replay the audit log through a candidate policy",
        description="Decide every recorded tools/call, prompts/get and resources/read again with "
        "the candidate policy F and report what changes: calls newly denied, newly needing "
        "approval, newly allowed, by server and tool. Exit 1 when a call that went through "
        "then would now be denied or need approval, 0 otherwise, 2 on errors. A broken "
        "audit chain is a warning here (nothing is learned from it).",
    )
    test.add_argument("file", metavar="F", help="the candidate policy")
    test.add_argument("--against", metavar="LOG", required=True, help="the audit log")
    test.add_argument("--server", metavar="NAME", help="replay only this server's calls")
    test.add_argument("--since", metavar="DATE", help="ignore calls before this time or date")
    test.add_argument("--json", action="store_true", help="print the report as JSON")
    _verify_options(test)
    test.set_defaults(handler=_test)


def _verify_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--key-file",
        metavar="F",
        type=Path,
        help="the install key that signed the log (default: this install's)",
    )
    parser.add_argument(
        "--allow-unverified",
        action="store_true",
        help="use a log whose chain is broken or cannot be checked (loud warning)",
    )


def _validate(args: argparse.Namespace) -> int:
    import sys

    from portcullis.policy.load import load_policy, unimplemented_keys

    # No cache: validation should judge the file with this code, and touch no state.
    policy = load_policy(args.file, use_cache=False)
    count = len(policy.servers)
    print(f"ok: {args.file} ({count} server{'' if count == 1 else 's'})")
    for name, server in policy.servers.items():
        relaxed = server.observe.relaxed()
        if server.mode == "observe":
            from portcullis.gateway.auditor import observe_warning

            print(f"portcullis: {observe_warning(server)}", file=sys.stderr)
        elif relaxed:
            print(
                f'portcullis: warning: server "{name}": observe relaxes {", ".join(relaxed)}, '
                "but its mode is enforce, so that has no effect",
                file=sys.stderr,
            )
    later = unimplemented_keys(policy)
    if later:
        print(
            "portcullis: warning: not enforced by this version, `portcullis run` will refuse "
            f"to start: {', '.join(later)}",
            file=sys.stderr,
        )
    return 0


def _schema(args: argparse.Namespace) -> int:
    import json

    from portcullis.policy.schema import policy_schema

    print(json.dumps(policy_schema(), indent=2))
    return 0


def _since(value: str | None) -> str | None:
    from portcullis._exceptions import ConfigError
    from portcullis.audit import parse_time

    if value is None:
        return None
    try:
        return parse_time(value)
    except ValueError:
        raise ConfigError(
            f"--since {value!r} is not an RFC 3339 time or a date (2026-11-24T10:00:00Z, "
            "2026-11-24)"
        ) from None


def _log(value: str) -> Path:
    from portcullis._exceptions import ConfigError
    from portcullis.audit import log_files

    path = Path(value).expanduser()
    if not log_files(path):
        raise ConfigError(f"no audit log at {path}")
    return path


def _chain_problem(log: Path, args: argparse.Namespace) -> str | None:
    """Why the log cannot be trusted (broken or unverifiable chain), or None when intact."""
    from portcullis._exceptions import AuditError, ConfigError
    from portcullis.audit import verify
    from portcullis.cli.audit import audit_key

    try:
        key = audit_key(args)
    except ConfigError as exc:
        return f"the audit chain cannot be verified: {exc}"
    try:
        report = verify(log, key)
    except AuditError as exc:
        return f"the audit chain cannot be verified: {exc}"
    return None if report.ok else str(report)


def _records(log: Path) -> Iterator[dict[str, Any]]:
    from portcullis._exceptions import AuditError, ConfigError
    from portcullis.audit import read_records

    try:
        yield from read_records(log)
    except (OSError, AuditError) as exc:
        raise ConfigError(f"cannot read the audit log {log}: {exc}") from exc


def _suggest(args: argparse.Namespace) -> int:
    import os

    from portcullis._exceptions import ConfigError
    from portcullis._state import state_dir
    from portcullis.detect.paths import default_protected
    from portcullis.policy.learn import learn
    from portcullis.policy.suggest import diff_policy, render_suggestion, suggested_servers

    log = _log(args.from_audit)
    since = _since(args.since)
    warnings: list[str] = []
    problem = _chain_problem(log, args)
    if problem is not None:
        if not args.allow_unverified:
            raise ConfigError(
                f"{problem}. A tampered log could teach the policy to allow what was never "
                "used; pass --allow-unverified to learn from it anyway (after checking it)"
            )
        warnings.append(f"learned from an UNVERIFIED log: {problem}")
        print(f"portcullis: WARNING: {warnings[-1]}", file=sys.stderr)
    current = raw = None
    if args.policy:
        from portcullis.policy.load import load_policy
        from portcullis.policy.source import read_yaml

        current = load_policy(args.policy, use_cache=False)
        raw, _ = read_yaml(Path(args.policy).read_bytes(), args.policy)
    home = str(state_dir(create=False))
    # What `run` protects, plus the log read here and the file about to be written.
    protected = default_protected(args.policy, home)
    keep_out = [home, str(log.absolute())]
    for extra in (args.policy, args.output):
        if extra:
            keep_out.append(os.path.abspath(extra))
            protected.append(os.path.abspath(extra))
    protected += [str(log.absolute()), f"{log.absolute()}.anchor"]

    def is_dir(path: str) -> bool | None:
        return True if os.path.isdir(path) else False if os.path.lexists(path) else None

    learned = learn(
        _records(log),
        server=args.server,
        since=since,
        home=os.path.expanduser("~"),
        protected=protected,
        keep_out=keep_out,
        is_dir=is_dir,
    )
    if args.server is not None and args.server not in learned:
        raise ConfigError(f"the audit log {log} has no records of server {args.server!r}")
    if not learned:
        raise ConfigError(f"the audit log {log} has no call or tools/list records to learn from")
    text = render_suggestion(
        learned, log=str(log), current=raw, current_path=args.policy, warnings=warnings
    )
    if args.output:
        try:
            Path(args.output).write_text(text, encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot write {args.output}: {exc.strerror}") from exc
    else:
        sys.stdout.write(text)
    if current is not None:
        changes = diff_policy(suggested_servers(learned), current)
        print(f"portcullis: changes against {args.policy}:", file=sys.stderr)
        for line in changes or ["(none)"]:
            print(f"  {line}", file=sys.stderr)
    return 0


def _test(args: argparse.Namespace) -> int:
    from portcullis._state import state_dir
    from portcullis.detect.paths import default_protected
    from portcullis.policy.load import load_policy
    from portcullis.policy.replay import recorded_calls, replay

    policy = load_policy(args.file, use_cache=False)
    log = _log(args.against)
    since = _since(args.since)
    problem = _chain_problem(log, args)
    if problem is not None:
        print(
            f"portcullis: WARNING: {problem}; the replay may not show every call", file=sys.stderr
        )
    if args.server is not None and args.server not in policy.servers:
        from portcullis._exceptions import ConfigError

        raise ConfigError(f"server {args.server!r} is not in the policy {args.file}")
    calls, schemas = recorded_calls(_records(log), server=args.server, since=since)
    # The protected paths `portcullis check` uses: the policy file and the state directory.
    protected = default_protected(policy.source, str(state_dir(create=False)))
    report = replay(calls, policy, schemas=schemas, protected=protected)
    if args.json:
        import json

        print(json.dumps(report.as_dict(), indent=2))
    else:
        _print_report(report, args.file, str(log))
    return 1 if report.tightened else 0


def _print_report(report: Any, policy: str, log: str) -> None:
    from rich.console import Console
    from rich.markup import escape

    out = Console(highlight=False, soft_wrap=True)
    out.print(
        f"Replayed {report.replayed} of {report.calls} recorded calls from {escape(log)} "
        f"through {escape(policy)}: {report.unchanged} unchanged, "
        f"[bold red]{report.count('newly_denied')} newly denied[/], "
        f"[yellow]{report.count('newly_confirm')} newly need approval[/], "
        f"[green]{report.count('newly_allowed')} newly allowed[/]."
    )
    titles = {
        "newly_denied": "[bold red]Newly denied[/]",
        "newly_confirm": "[yellow]Newly need a person's approval[/]",
        "newly_allowed": "[green]Newly allowed[/]",
    }
    for kind, title in titles.items():
        groups = [g for g in report.groups if g.kind == kind]
        if not groups:
            continue
        out.print(f"\n{title}:")
        for g in groups:
            out.print(
                f"  {escape(g.server)} {escape(g.subject)}: {g.count} call"
                f"{'' if g.count == 1 else 's'} ({g.then} -> {g.now}, rule {escape(g.rule)})"
            )
            out.print(f"    reason: {escape(g.reason)}")
            out.print(f"    e.g. {escape(g.example)}")
    if report.not_replayable:
        total = sum(report.not_replayable.values())
        detail = ", ".join(f"{k}: {v}" for k, v in sorted(report.not_replayable.items()))
        out.print(
            f"\nNot replayable (the log kept neither arguments nor observed inputs): "
            f"{total} ({escape(detail)})"
        )
    if report.not_comparable:
        detail = ", ".join(f"{k}: {v}" for k, v in sorted(report.not_comparable.items()))
        out.print(f"Denied then by rules a replay does not judge: {escape(detail)}")
    if report.unknown_servers:
        detail = ", ".join(f"{k}: {v}" for k, v in sorted(report.unknown_servers.items()))
        out.print(f"Calls to servers the policy does not define: {escape(detail)}")
