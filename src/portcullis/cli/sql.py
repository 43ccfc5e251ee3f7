"""``portcullis sql``: a read-only SQL MCP server on stdio (SQLite, PostgreSQL, or the demo)."""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["register"]

_DESCRIPTION = """\
Serve a database read-only over MCP (stdio), with the tools query, list_tables, describe_table
and explain. --db takes a postgresql:// URL (or libpq's host=… user=… form), a sqlite:/// URL
or a SQLite file path; --db-env names an environment variable holding one (so the URL stays
out of process listings); --db-file a SQLite file. Without any, the built-in demo database is
served. The policy's sql block for --server (else the server whose args start with `sql`, else
its defaults) sets deny_tables, allow_functions, max_rows, max_bytes, timeout_s, mask_columns
and schema.
Exit 2 when the database cannot be opened."""


def register(sub: Any) -> None:
    """Add the ``sql`` command."""
    p = sub.add_parser(
        "sql", help="serve a database read-only over MCP (stdio)", description=_DESCRIPTION
    )
    db = p.add_mutually_exclusive_group()
    db.add_argument("--db", metavar="URL", help="postgresql://…, sqlite:///path or a file path")
    db.add_argument("--db-env", metavar="VAR", help="environment variable holding the URL")
    db.add_argument("--db-file", metavar="F", help="a SQLite database file")
    p.add_argument(
        "--policy",
        metavar="F",
        help="policy file (default: $PORTCULLIS_POLICY, then ~/.config/portcullis/policy.yaml)",
    )
    p.add_argument("--server", metavar="NAME", help="the policy's server entry to read")
    p.set_defaults(handler=_sql)


def _sql(args: argparse.Namespace) -> int:
    from portcullis.servers.sql import resolve_target, run, settings_from_policy

    target = resolve_target(args.db, args.db_env, args.db_file)
    settings = settings_from_policy(args.policy, args.server, demo=target.kind == "demo")
    return run(target, settings)
