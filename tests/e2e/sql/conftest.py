"""Fixtures of the ``portcullis sql`` end-to-end tests: the databases and the server under test.

``pg``: the throw-away PostgreSQL cluster of scripts/pg-test-server.sh. CI (.ci/run) starts it
once and exports ``PORTCULLIS_TEST_PG_URL`` (role ``portcullis_ro``, SELECT on the allowed
tables only) and ``PORTCULLIS_TEST_PG_OWNER_URL`` (``portcullis_owner``, owns every table);
without them the fixture starts a cluster itself for the session and stops it after. Without
PostgreSQL installed the PostgreSQL tests fail under CI (``CI`` set) and are skipped, saying
why, elsewhere.

``sqlite_db``: a SQLite file with the same schema and rows (tests/fixtures/sql/schema.sql).

``sql``: starts ``python -m portcullis sql`` as a real process for one test, with a policy
written from keyword arguments, and talks to it with the official SDK ``Client``; every result
and the server's stderr are kept so a test can check what never appears in them.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import glob
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pytest
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

REPO = Path(__file__).resolve().parents[3]
FIXTURES = REPO / "tests" / "fixtures" / "sql"
PG_SCRIPT = REPO / "scripts" / "pg-test-server.sh"
# Generous, never asserted on: only a bound so a broken server fails a test instead of hanging.
TIMEOUT = 120.0

#: Blocked by every policy of these tests (``deny_tables``).
BLOCKED = ("users_credentials", "api_keys", "sessions")
#: Masked by every policy of these tests (``mask_columns``).
MASKED = ("email", "phone")
#: In every secret of the blocked tables, so a test can assert none ever comes out.
SECRET_MARK = "SECRETMARK"
#: Values of the masked columns (customers 1 and 2) that must never come out.
MASKED_VALUES = ("ada.lovelace@example.org", "grace.hopper@example.org", "+44 20 7946 0100")


@dataclass(frozen=True)
class Database:
    """A fixture database and how ``portcullis sql`` reaches it."""

    dialect: str  # "postgres" | "sqlite"
    args: tuple[str, ...]  # the --db… options of `portcullis sql`
    env: dict[str, str] = field(default_factory=dict)  # extra environment of the server
    url: str = ""  # the read-only role's URL (PostgreSQL)
    owner_url: str = ""  # the owning role's URL (PostgreSQL)
    path: Path | None = None  # the file (SQLite)
    #: Strings that must appear in no result and no stderr: URLs, passwords.
    secrets: tuple[str, ...] = ()


def _password(url: str) -> str:
    userinfo = url.split("://", 1)[1].rsplit("@", 1)[0]
    return userinfo.split(":", 1)[1] if ":" in userinfo else ""


def _pg_database(url: str, owner_url: str) -> Database:
    return Database(
        dialect="postgres",
        # Through the environment, as docs recommend: the URL is never on a command line.
        args=("--db-env", "PORTCULLIS_TEST_DB_URL"),
        env={"PORTCULLIS_TEST_DB_URL": url},
        url=url,
        owner_url=owner_url,
        secrets=(url, _password(url), owner_url, _password(owner_url)),
    )


def _postgres_missing() -> str | None:
    if glob.glob("/usr/lib/postgresql/*/bin/initdb") or shutil.which("initdb"):
        return None
    return (
        "PostgreSQL is not installed (no initdb under /usr/lib/postgresql/*/bin nor on PATH): "
        "`apt-get install postgresql`, or set PORTCULLIS_TEST_PG_URL and "
        "PORTCULLIS_TEST_PG_OWNER_URL to a cluster made by scripts/pg-test-server.sh"
    )


def _parse_exports(text: str) -> dict[str, str]:
    values = {}
    for line in text.splitlines():
        if line.startswith("export ") and "=" in line:
            name, value = line[len("export ") :].split("=", 1)
            values[name] = value.strip("'")
    return values


@pytest.fixture(scope="session")
def pg() -> Iterator[Database]:
    """The PostgreSQL fixture database (CI's cluster, else one started for this session)."""
    url = os.environ.get("PORTCULLIS_TEST_PG_URL", "")
    owner_url = os.environ.get("PORTCULLIS_TEST_PG_OWNER_URL", "")
    if url and owner_url:
        yield _pg_database(url, owner_url)
        return
    missing = _postgres_missing()
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the PostgreSQL tests: {missing}", pytrace=False)
        pytest.skip(missing)
    done = subprocess.run(
        ["bash", str(PG_SCRIPT), "start"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    if done.returncode != 0:
        pytest.fail(f"scripts/pg-test-server.sh start failed:\n{done.stderr}", pytrace=False)
    values = _parse_exports(done.stdout)
    try:
        yield _pg_database(values["PORTCULLIS_TEST_PG_URL"], values["PORTCULLIS_TEST_PG_OWNER_URL"])
    finally:
        subprocess.run(
            ["bash", str(PG_SCRIPT), "stop", values["PC_PG_DIR"]],
            capture_output=True,
            timeout=TIMEOUT,
            check=False,
            stdin=subprocess.DEVNULL,
        )


def build_sqlite(path: Path) -> Path:
    """Write the fixture SQLite database (tests/fixtures/sql/schema.sql) to ``path``."""
    conn = sqlite3.connect(path)
    try:
        conn.executescript((FIXTURES / "schema.sql").read_text())
        conn.commit()
    finally:
        conn.close()
    return path


@pytest.fixture(scope="session")
def sqlite_db(tmp_path_factory: pytest.TempPathFactory) -> Database:
    """The SQLite fixture database, a file made once for the session."""
    path = build_sqlite(tmp_path_factory.mktemp("sqlite") / "fixture.db")
    return Database(dialect="sqlite", args=("--db-file", str(path)), path=path)


def policy_yaml(db: Database, **sql: Any) -> str:
    """A policy whose server ``db`` blocks :data:`BLOCKED` and masks :data:`MASKED`.

    Keyword arguments are added to (or replace keys of) its ``sql:`` block.
    """
    block: dict[str, Any] = {
        "dialect": db.dialect,
        "deny_tables": list(BLOCKED),
        "mask_columns": list(MASKED),
    }
    if db.dialect == "postgres":
        block["schema"] = "app"
    block.update(sql)
    lines = ["version: 1", "servers:", "  db:", "    tools: {default: allow}", "    sql:"]
    lines += [
        f"      {key}: {json.dumps(value)}" for key, value in block.items() if value is not None
    ]
    return "\n".join(lines) + "\n"


@dataclass
class Outcome:
    """One tools/call result, flattened."""

    is_error: bool
    text: str
    structured: dict[str, Any] | None

    @property
    def rows(self) -> list[list[Any]]:
        """The result rows (``structuredContent.rows``); fails on an error result."""
        assert not self.is_error, self.text
        assert self.structured is not None, f"no structuredContent: {self.text}"
        rows: list[list[Any]] = self.structured["rows"]
        return rows

    @property
    def columns(self) -> list[str]:
        """The result's column names."""
        assert self.structured is not None, f"no structuredContent: {self.text}"
        return [c["name"] for c in self.structured["columns"]]


class Session:
    """An SDK client session with one ``portcullis sql`` process; keeps every result."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.seen: list[str] = []

    async def call(self, tool: str, **arguments: Any) -> Outcome:
        """Call ``tool``; return the result, flattened."""
        result = await self.client.call_tool(tool, arguments)
        text = "".join(getattr(block, "text", "") for block in result.content)
        outcome = Outcome(bool(result.is_error), text, result.structured_content)
        self.seen.append(text)
        self.seen.append(json.dumps(result.structured_content, default=str))
        return outcome

    async def query(self, sql: str, params: Any = None) -> Outcome:
        """The ``query`` tool."""
        if params is None:
            return await self.call("query", sql=sql)
        return await self.call("query", sql=sql, params=params)

    async def rows(self, sql: str, params: Any = None) -> list[list[Any]]:
        """The rows of a query that must succeed."""
        return (await self.query(sql, params)).rows


class SqlServer:
    """Starts ``python -m portcullis sql`` for one test; the client is the SDK's."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.home = tmp / "state"
        self.home.mkdir(mode=0o700)
        self.stderr_path = tmp / "server.stderr"
        self._stderr: IO[str] | None = None
        self._count = 0

    def argv(self, db: Database, policy: str | None) -> list[str]:
        """The server's command line; ``policy`` is YAML text (None: no policy at all)."""
        cmd = [sys.executable, "-m", "portcullis", "sql", *db.args]
        if policy is not None:
            self._count += 1
            path = self.tmp / f"policy{self._count}.yaml"
            path.write_text(policy)
            cmd += ["--policy", str(path), "--server", "db"]
        return cmd

    def env(self, db: Database) -> dict[str, str]:
        """The server's environment: PATH, a private HOME and state dir, the URL.

        HOME is the test's directory, so no user policy (~/.config/portcullis) nor libpq file
        (~/.pgpass) of the person running the tests is read.
        """
        env = {k: os.environ[k] for k in ("LOGNAME", "PATH", "USER") if k in os.environ}
        env["HOME"] = str(self.tmp)
        env["PORTCULLIS_HOME"] = str(self.home)
        env.update(db.env)
        return env

    @contextlib.asynccontextmanager
    async def session(
        self, db: Database, policy: str | None = "", *, mode: str = "legacy", **sql: Any
    ) -> AsyncIterator[Session]:
        """A client session; ``policy`` "" means :func:`policy_yaml` with ``sql``.

        ``mode`` is the SDK client's: "legacy" (initialize) or "auto" (2026-07-28 discover).
        """
        if policy == "":
            policy = policy_yaml(db, **sql)
        argv = self.argv(db, policy)
        params = StdioServerParameters(
            command=argv[0], args=argv[1:], env=self.env(db), cwd=self.tmp
        )
        if self._stderr is None:
            self._stderr = open(self.stderr_path, "w")  # noqa: SIM115 - closed in close()
        transport = stdio_client(params, errlog=self._stderr)
        async with Client(transport, mode=mode, cache=None, read_timeout_seconds=TIMEOUT) as client:
            yield Session(client)

    def stderr(self) -> str:
        """Everything the servers of this test wrote to stderr."""
        if self._stderr is not None:
            self._stderr.flush()
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""

    def close(self) -> None:
        """Close the stderr file."""
        if self._stderr is not None:
            self._stderr.close()


@pytest.fixture
def sql(tmp_path: Path) -> Iterator[SqlServer]:
    """The ``portcullis sql`` launcher of one test."""
    server = SqlServer(tmp_path)
    try:
        yield server
    finally:
        server.close()


def assert_refused(outcome: Outcome, *, rule: str | None = None) -> None:
    """``outcome`` is an error result: a guard denial (of ``rule``) or a database refusal."""
    assert outcome.is_error, f"not refused: {outcome.text[:300]}"
    if rule is not None:
        assert outcome.text.startswith(f"denied ({rule})"), outcome.text


def assert_denied(outcome: Outcome) -> str:
    """``outcome`` is a guard denial, ``denied (<rule-id>): …``; return the rule id."""
    assert outcome.is_error, f"not refused: {outcome.text[:300]}"
    assert outcome.text.startswith("denied ("), outcome.text
    return outcome.text[len("denied (") : outcome.text.index(")")]


_BASE64 = re.compile(r"base64:([A-Za-z0-9+/]+=*)")


def assert_never_shown(texts: list[str], *needles: str) -> None:
    """None of ``needles`` occurs in any of ``texts`` (case-insensitive) nor in any ``base64:``.

    The server shows bytes as ``base64:…``, and so a whole row that reaches it in binary form.
    """
    for text in texts:
        decoded = []
        for m in _BASE64.finditer(text):
            with contextlib.suppress(binascii.Error, ValueError):
                decoded.append(base64.b64decode(m.group(1)).decode("latin-1"))
        low = "\n".join([text, *decoded]).lower()
        for needle in needles:
            assert needle.lower() not in low, f"{needle!r} appeared in: {text[:500]}"
