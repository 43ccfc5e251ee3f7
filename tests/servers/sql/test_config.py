"""Target resolution and policy settings: the URL never appears in a message."""

from __future__ import annotations

from pathlib import Path

import pytest

from portcullis._exceptions import ConfigError
from portcullis.servers.sql.config import (
    DEFAULT_MASKS,
    Settings,
    Target,
    resolve_target,
    settings_from_policy,
)

SECRET_URL = "postgresql://alice:Sup3rS3cretPw@db.internal:6543/shop?sslmode=require"


def test_postgres_url_label_has_no_password() -> None:
    """The label names host, port and user, never the password."""
    target = resolve_target(db=SECRET_URL)
    assert target.kind == "postgres"
    assert target.label == "the database at db.internal:6543 as alice"
    assert "Sup3rS3cretPw" not in repr(target)


def test_env_label_names_only_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    """--db-env: messages say "the database in VAR"."""
    monkeypatch.setenv("SHOP_DB", SECRET_URL)
    target = resolve_target(db_env="SHOP_DB")
    assert target.label == "the database in SHOP_DB" and target.url == SECRET_URL


@pytest.mark.parametrize(
    ("given", "path"),
    [
        ("sqlite:///srv/app.db", "/srv/app.db"),
        ("sqlite:////srv/app.db", "/srv/app.db"),
        ("/srv/app.db", "/srv/app.db"),
        ("rel/app.db", "rel/app.db"),
    ],
)
def test_sqlite_urls_and_paths(given: str, path: str) -> None:
    """sqlite:/// URLs (three or four slashes) and bare paths are SQLite files."""
    target = resolve_target(db=given)
    assert (target.kind, target.url) == ("sqlite", path)


def test_no_db_is_the_demo() -> None:
    """Without --db, --db-env or --db-file the demo database is served."""
    assert resolve_target().kind == "demo"
    assert resolve_target(db_file="/x.db").kind == "sqlite"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"db": "mysql://root:Sup3rS3cretPw@h/x"},
        {"db_env": "PORTCULLIS_TEST_UNSET_VAR"},
        {"db": SECRET_URL, "db_file": "/x.db"},
        {"db": "sqlite://"},
    ],
)
def test_bad_targets_are_config_errors_without_the_url(kwargs: dict[str, str]) -> None:
    """Unsupported schemes, unset variables and conflicting options exit 2, URL unsaid."""
    with pytest.raises(ConfigError) as info:
        resolve_target(**kwargs)
    assert "Sup3rS3cretPw" not in str(info.value) and "root:" not in str(info.value)


def test_unreachable_postgres_error_has_no_password() -> None:
    """A connection failure names the database by host and user, never the password."""
    from portcullis.servers.sql.backends import open_backend
    from portcullis.servers.sql.config import Settings

    target = resolve_target(db="postgresql://alice:Sup3rS3cretPw@127.0.0.1:1/shop")
    with pytest.raises(ConfigError) as info:
        open_backend(target, Settings(timeout_s=2))
    assert "Sup3rS3cretPw" not in str(info.value)
    assert "the database at 127.0.0.1:1 as alice" in str(info.value)


POLICY = """\
version: 1
defaults:
  tools: {default: allow}
servers:
  other:
    command: npx
    args: [something]
  db:
    command: portcullis
    args: [sql, --db-env, DATABASE_URL]
    redact: [secrets, pii]
    sql:
      dialect: postgres
      read_only: false
      deny_tables: [api_keys]
      allow_tables: [orders, "shop.*"]
      max_rows: 50
      max_bytes: 4096
      timeout_s: 2
      mask_columns: ["*email*"]
      schema: shop
"""


@pytest.mark.usefixtures("home")
def test_settings_from_the_policy_server_running_sql(tmp_path: Path) -> None:
    """Without --server, the entry whose args start with `sql` is read, with its sql keys."""
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    s = settings_from_policy(str(policy), None)
    assert s.deny_tables == ("api_keys",) and s.allow_tables == ("orders", "shop.*")
    assert (s.max_rows, s.max_bytes, s.timeout_s, s.schema) == (50, 4096, 2.0, "shop")
    assert s.mask_columns[: len(DEFAULT_MASKS)] == DEFAULT_MASKS and "*email*" in s.mask_columns
    assert s.pii is True
    assert any("read_only" in w for w in s.warnings)
    demo = settings_from_policy(str(policy), "db", demo=True)
    assert demo.deny_tables == ("users_credentials", "api_keys")
    plain = settings_from_policy(str(policy), "other")
    assert plain.max_rows == 1000 and plain.deny_tables == ()


@pytest.mark.usefixtures("home")
def test_unknown_server_is_a_config_error(tmp_path: Path) -> None:
    """--server naming no entry is refused with the list of servers."""
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    with pytest.raises(ConfigError, match="other, db"):
        settings_from_policy(str(policy), "nope")


@pytest.mark.usefixtures("home")
def test_bad_sql_keys_are_policy_errors(tmp_path: Path) -> None:
    """The new keys are validated like every other key."""
    from portcullis._exceptions import PolicyError

    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY.replace("max_rows: 50", "max_rows: 0"))
    with pytest.raises(PolicyError, match="max_rows"):
        settings_from_policy(str(policy), None)


def test_server_without_a_policy_is_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--server with no policy file to read it from is refused rather than ignored."""
    monkeypatch.delenv("PORTCULLIS_POLICY", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    with pytest.raises(ConfigError, match="needs a policy"):
        settings_from_policy(None, "db")
    assert settings_from_policy(None, None).deny_tables == ()


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://reader:Hunter2pw%zz@127.0.0.1:1/db",
        "postgresql://reader:Hunter2pw%2@127.0.0.1:1/db",
        "postgresql://reader@127.0.0.1:1/db?password=Hunter2pw%zz",
    ],
)
def test_a_url_that_does_not_parse_never_echoes_its_password(url: str) -> None:
    """A bad percent-encoded token is quoted raw by libpq; the message never holds the password."""
    from portcullis.servers.sql.postgres import PostgresBackend

    with pytest.raises(ConfigError) as err:
        PostgresBackend(Target("postgres", url, "the database in DB"), Settings(timeout_s=1))
    assert "Hunter2" not in str(err.value)


@pytest.mark.parametrize(
    "db",
    [
        "host=db.internal user=alice password=Hunter2pw dbname=shop",
        "postgresql:/alice:Hunter2pw@db.internal/shop",
        "sqlite:/alice:Hunter2pw@db.internal/shop",
        "/srv/alice:Hunter2pw@db.internal",
    ],
)
def test_a_mistyped_url_is_never_echoed(db: str) -> None:
    """A libpq string or a mistyped URL is not echoed as a file path, password and all."""
    target = resolve_target(db=db)
    assert "Hunter2pw" not in target.label and "Hunter2pw" not in repr(target)


def test_a_libpq_keyword_string_is_postgres() -> None:
    """`host=… user=… password=…` is libpq's own form of a PostgreSQL URL."""
    target = resolve_target(db="host=db.internal port=6543 user=alice password=Hunter2pw")
    assert target.kind == "postgres"
    assert target.label == "the database at db.internal:6543 as alice"
