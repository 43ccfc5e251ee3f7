"""MCP servers that Portcullis ships: servers that are safe by construction.

* :mod:`portcullis.servers.sql` — ``portcullis sql``, a read-only database server for SQLite and
  PostgreSQL.
"""

from __future__ import annotations

__all__: list[str] = []
