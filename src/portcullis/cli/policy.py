"""``portcullis policy``: validate a policy file, print its JSON Schema."""

from __future__ import annotations

import argparse
from typing import Any

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


def _validate(args: argparse.Namespace) -> int:
    import sys

    from portcullis.policy.load import load_policy, unimplemented_keys

    # No cache: validation should judge the file with this code, and touch no state.
    policy = load_policy(args.file, use_cache=False)
    count = len(policy.servers)
    print(f"ok: {args.file} ({count} server{'' if count == 1 else 's'})")
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
