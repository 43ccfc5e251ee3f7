"""Settings of ``portcullis sql``: which database, and the limits from the policy's ``sql`` block.

Pure apart from reading the environment and the policy file. The database URL is kept only in
:class:`Target` (``repr`` hides it) and every message about the database uses
:attr:`Target.label`, which never holds a password and, for an environment variable, not even the
host ("the database in DATABASE_URL").
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Literal

from portcullis._exceptions import ConfigError

__all__ = [
    "DEFAULT_MASKS",
    "Settings",
    "Target",
    "resolve_target",
    "settings_from_policy",
]

Kind = Literal["sqlite", "postgres", "demo"]

#: Column-name globs (case-insensitive) whose values are always masked; a policy adds to them.
DEFAULT_MASKS: tuple[str, ...] = (
    "*password*",
    "*passwd*",
    "*pwd*",
    "*passphrase*",
    "*secret*",
    "*token*",
    "*api_key*",
    "*apikey*",
    "*private_key*",
    "*credential*",
    "ssn",
    "*social_security*",
    "*credit_card*",
    "*card_number*",
    "cvv",
    "*_cvv",
    "iban",
)

_PG_SCHEMES = ("postgresql://", "postgres://")
_CONNINFO = re.compile(r"[A-Za-z_]+\s*=")


@dataclass(frozen=True)
class Target:
    """The database to serve. ``url`` may hold a password: it is excluded from ``repr``."""

    kind: Kind
    url: str = field(repr=False)  # a libpq URL for postgres, a file path for sqlite
    label: str  # safe to print: no password, no full URL


@dataclass(frozen=True)
class Settings:
    """What the server enforces beyond the database's own read-only mode."""

    deny_tables: tuple[str, ...] = ()
    allow_tables: tuple[str, ...] = ()  # empty: any table deny_tables leaves
    allow_functions: str | tuple[str, ...] = "default"
    max_rows: int = 1000
    max_bytes: int = 1024 * 1024
    timeout_s: float = 10.0
    mask_columns: tuple[str, ...] = DEFAULT_MASKS
    schema: str | None = None  # PostgreSQL search_path; None: the role's own, pinned at start
    pii: bool = False  # also redact personal data (the policy's `redact: [pii]`)
    warnings: tuple[str, ...] = ()  # policy settings the server overrides, said at start


def _pg_label(url: str, origin: str | None) -> str:
    if origin is not None:
        return f"the database in {origin}"
    try:
        from psycopg.conninfo import conninfo_to_dict

        info = conninfo_to_dict(url)
    except Exception:  # an unparsable URL: say nothing of it
        return "the PostgreSQL database given with --db"
    host = str(info.get("host") or "localhost")
    port = str(info.get("port") or "5432")
    user = info.get("user")
    who = f" as {user}" if user else ""
    return f"the database at {host}:{port}{who}"


def _sqlite_path(url: str) -> str:
    rest = url[len("sqlite://") :]
    # sqlite:///abs/path and SQLAlchemy's sqlite:////abs/path both mean /abs/path.
    while rest.startswith("//"):
        rest = rest[1:]
    if not rest or rest == "/":
        raise ConfigError("a sqlite:// URL needs a file path, e.g. sqlite:///srv/data/app.db")
    return rest


def _path_label(path: str, origin: str | None) -> str:
    if origin is not None:
        return f"the database in {origin}"
    # A mistyped URL or a libpq string read as a file path must not be echoed with its
    # password: `postgresql:/u:pw@h/db`, `sqlite:/u:pw@h`.
    if "@" in path or "password" in path.lower():
        return "given with --db"
    return path


def _from_url(url: str, origin: str | None) -> Target:
    text = url.strip()
    lower = text.lower()
    if lower.startswith(_PG_SCHEMES) or lower.startswith(("postgresql:", "postgres:")):
        return Target("postgres", text, _pg_label(text, origin))
    if _CONNINFO.match(text):
        # libpq's keyword/value form (`host=db user=reader password=…`) is PostgreSQL too.
        return Target("postgres", text, _pg_label(text, origin))
    if lower.startswith("sqlite:"):
        path = _sqlite_path(text)
        return Target("sqlite", path, _path_label(path, origin))
    if "://" in text:
        scheme = text.split("://", 1)[0][:20]
        where = origin or "--db"
        raise ConfigError(
            f"the URL in {where} has the scheme {scheme!r}: portcullis sql serves "
            "postgresql:// and sqlite:/// URLs, or a path to a SQLite file"
        )
    if not text:
        raise ConfigError(f"{origin or '--db'} is empty")
    return Target("sqlite", text, _path_label(text, origin))


def resolve_target(
    db: str | None = None, db_env: str | None = None, db_file: str | None = None
) -> Target:
    """The database named by ``--db``, ``--db-env`` or ``--db-file`` (at most one); else the demo.

    Raises :class:`ConfigError` (exit 2) with a message that never holds the URL.
    """
    given = [n for n, v in (("--db", db), ("--db-env", db_env), ("--db-file", db_file)) if v]
    if len(given) > 1:
        raise ConfigError(f"give one of --db, --db-env and --db-file, not {' and '.join(given)}")
    if db is not None:
        return _from_url(db, None)
    if db_env is not None:
        value = os.environ.get(db_env)
        if not value:
            raise ConfigError(f"the environment variable {db_env} is not set or is empty")
        return _from_url(value, db_env)
    if db_file is not None:
        return Target("sqlite", db_file, db_file)
    return Target("demo", "", "the built-in demo database")


def settings_from_policy(
    policy_file: str | None, server: str | None, *, demo: bool = False
) -> Settings:
    """Read the ``sql`` block (and ``redact``) of the policy server this command runs as.

    ``server`` names the entry; without it, the first server whose ``args`` start with ``sql``,
    else the policy's defaults. Without a policy file the search order of DESIGN §4 applies, and
    with none found the built-in defaults. The demo database always blocks
    ``users_credentials``.
    """
    from portcullis.policy.load import find_policy, load_policy

    path = policy_file if policy_file is not None else find_policy()
    deny: tuple[str, ...] = ("users_credentials",) if demo else ()
    if path is None:
        if server is not None:
            raise ConfigError(
                f"--server {server} needs a policy file: give --policy F or set PORTCULLIS_POLICY"
            )
        return Settings(deny_tables=deny)
    policy = load_policy(path)
    if server is not None:
        entry = policy.servers.get(server)
        if entry is None:
            names = ", ".join(policy.servers) or "none"
            raise ConfigError(f"server {server!r} is not in the policy {path} (servers: {names})")
    else:
        entry = next(
            (s for s in policy.servers.values() if s.launch.args[:1] == ("sql",)),
            policy.defaults,
        )
    pii = "pii" in entry.redact
    sql = entry.sql
    if sql is None:
        return Settings(deny_tables=deny, pii=pii)
    warnings: list[str] = []
    if not sql.read_only:
        warnings.append(
            f"the policy sets sql.read_only: false for {entry.name}; portcullis sql is "
            "read-only regardless"
        )
    return Settings(
        deny_tables=tuple(dict.fromkeys((*deny, *sql.deny_tables))),
        allow_tables=tuple(sql.allow_tables),
        allow_functions=sql.allow_functions,
        max_rows=sql.max_rows,
        max_bytes=sql.max_bytes,
        timeout_s=sql.timeout_s,
        mask_columns=tuple(dict.fromkeys((*DEFAULT_MASKS, *sql.mask_columns))),
        schema=sql.schema,
        pii=pii,
        warnings=tuple(warnings),
    )
