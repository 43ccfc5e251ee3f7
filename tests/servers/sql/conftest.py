"""Fixtures for the ``portcullis sql`` unit tests: the demo database and a masking fixture."""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from portcullis.servers.sql.backends import SqliteBackend
from portcullis.servers.sql.config import Settings
from portcullis.servers.sql.demo import build_demo
from portcullis.servers.sql.tools import SqlTools

DEMO_SETTINGS = Settings(deny_tables=("users_credentials",))

MakeTools = Callable[..., SqlTools]


@pytest.fixture(scope="session")
def demo_master(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The demo database, built once per session (tests get copies)."""
    return build_demo(str(tmp_path_factory.mktemp("demo")))


@pytest.fixture
def demo_path(demo_master: str, tmp_path: Path) -> str:
    """A private copy of the demo database file, read-only like the original."""
    path = tmp_path / "shop.db"
    shutil.copyfile(demo_master, path)
    path.chmod(0o400)
    return str(path)


@pytest.fixture
def make_tools(demo_path: str) -> Iterator[MakeTools]:
    """Build ``SqlTools`` over the demo database (or ``path``) with the given settings."""
    opened: list[SqliteBackend] = []

    def make(settings: Settings = DEMO_SETTINGS, path: str | None = None) -> SqlTools:
        backend = SqliteBackend(path or demo_path, settings)
        opened.append(backend)
        return SqlTools(backend, settings)

    yield make
    for backend in opened:
        backend.close()


@pytest.fixture
def tools(make_tools: MakeTools) -> SqlTools:
    """The tools over the demo database with the demo's default settings."""
    return make_tools()


@pytest.fixture
def secrets_db(tmp_path: Path) -> str:
    """A small database with columns the default masks cover, and a view over them."""
    path = str(tmp_path / "secrets.db")
    conn = sqlite3.connect(path)
    conn.executescript(
        """
        CREATE TABLE accounts (id INTEGER PRIMARY KEY, login TEXT, password TEXT, ssn TEXT,
                               api_token TEXT);
        INSERT INTO accounts VALUES (1, 'ada', 'hunter2-horse-battery', '078-05-1120', 'tk-1'),
                                    (2, 'alan', NULL, '219-09-9999', 'tk-2');
        CREATE VIEW logins AS SELECT login, password AS pw FROM accounts;
        CREATE TABLE vault (id INTEGER, payload TEXT);
        INSERT INTO vault VALUES (1, 'the crown jewels');
        CREATE VIEW vault_view AS SELECT * FROM vault;
        """
    )
    conn.commit()
    conn.close()
    return path
