"""``portcullis sql``: a read-only database MCP server that is safe by construction.

Layers, each enough on its own to stop a write (docs/sql.md):

1. the SQL guard (:class:`portcullis.detect.sql.SqlGuard`): one read-only statement, allowed
   functions only, no blocked table, unparseable means denied;
2. the database: PostgreSQL runs each statement in its own ``BEGIN READ ONLY`` transaction with
   a timeout and a pinned ``search_path``, always rolled back; SQLite is opened ``mode=ro`` with
   ``query_only`` and an authorizer that permits reads only;
3. the role (PostgreSQL): the server warns at start when it can do more than read;
4. the results: row and byte caps, masking of sensitive columns, the redactor on every value.

:func:`run` wires them together and serves MCP on stdio (:mod:`.protocol`).
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import tempfile
from typing import TYPE_CHECKING, TextIO

from portcullis.servers.sql.config import Settings, Target, resolve_target, settings_from_policy

if TYPE_CHECKING:
    from portcullis.servers.sql.backends import Backend
    from portcullis.servers.sql.protocol import McpServer

__all__ = [
    "Running",
    "Settings",
    "Target",
    "build_server",
    "resolve_target",
    "run",
    "settings_from_policy",
]


def _instructions(dialect: str, settings: Settings) -> str:
    label = "PostgreSQL" if dialect == "postgres" else "SQLite"
    return (
        f"Read-only access to a {label} database. Start with list_tables and describe_table; "
        "query takes one SELECT (or WITH, VALUES, TABLE) statement; explain shows its plan. "
        f"Results are capped at {settings.max_rows:,} rows and {settings.max_bytes:,} bytes, "
        f"queries at {settings.timeout_s:g} s; sensitive columns are masked and secrets "
        "redacted. Writes, DDL, multiple statements and some functions and tables are refused."
    )


class Running:
    """An open database behind an MCP server; :meth:`close` releases both (and the demo file)."""

    def __init__(self, server: McpServer, backend: Backend, demo_dir: str | None) -> None:
        self.server = server
        self.backend = backend
        self._demo_dir = demo_dir

    def close(self) -> None:
        """Close the connection and delete the demo database, if any."""
        self.backend.close()
        if self._demo_dir is not None:
            shutil.rmtree(self._demo_dir, ignore_errors=True)


def build_server(target: Target, settings: Settings, *, log: TextIO | None = None) -> Running:
    """Open the database and build the MCP server.

    Raises :class:`~portcullis._exceptions.ConfigError` when the database cannot be opened.
    Start-up warnings go to ``log`` (default: stderr).
    """
    from portcullis.servers.sql.backends import open_backend
    from portcullis.servers.sql.protocol import McpServer
    from portcullis.servers.sql.tools import SqlTools, UnknownTool

    demo_dir = demo_path = None
    if target.kind == "demo":
        from portcullis.servers.sql.demo import build_demo

        demo_dir = tempfile.mkdtemp(prefix="portcullis-sql-demo-")
        demo_path = build_demo(demo_dir)
    try:
        backend = open_backend(target, settings, demo_path=demo_path)
    except BaseException:
        if demo_dir is not None:
            shutil.rmtree(demo_dir, ignore_errors=True)
        raise
    notes = list(settings.warnings)
    if target.kind != "demo":
        from portcullis.servers.sql.backends import DatabaseError

        try:
            notes.extend(backend.warnings())
        except DatabaseError as exc:
            notes.append(f"could not check the role's privileges ({exc})")
    for note in notes:
        print(f"portcullis sql: warning: {note}", file=log or sys.stderr)
    tools = SqlTools(backend, settings)
    server = McpServer(
        name="portcullis-sql",
        tools=tools.definitions,
        call=tools.call,
        instructions=_instructions(backend.dialect, settings),
        unknown_tool=UnknownTool,
    )
    return Running(server, backend, demo_dir)


def run(target: Target, settings: Settings) -> int:
    """Serve MCP on stdin/stdout until stdin closes; return the exit status."""
    from portcullis.servers.sql.protocol import serve_stdio

    # Keep fd 1 for protocol frames only: anything printed by accident goes to stderr.
    out_fd = os.dup(1)
    sys.stdout = sys.stderr
    running = build_server(target, settings)
    # A client that gives up sends SIGTERM; exit through `finally` so the demo file goes too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        serve_stdio(running.server, stdout_fd=out_fd)
    finally:
        running.close()
    return 0
