"""Plain-text credentials and database URLs with passwords, with evidence always masked."""

from __future__ import annotations

import pytest

from portcullis.detect._validate import github_checksum
from portcullis.scan.checks import secrets

from ._helpers import assert_never_leaks, rules, srv

_BODY = "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5"
GHP = "ghp_" + _BODY + github_checksum(_BODY)
OPENAI = "sk-proj-" + "Zq8vN2mK5pL9xR3tY7wB1cF4hJ6gD0sA2eQ9uI5oT3yR8wE1q"
AWS_ID = "AKIAQYLPMN5HFIQR7S2X"
RANDOM = "q8Zr2LpX7vK0mN4tB9wQ"


def test_github_token_in_env_is_critical_and_masked() -> None:
    """A real-shaped GitHub token in env is critical, on its line, never quoted whole."""
    s = srv(
        "gh",
        "npx",
        ["-y", "@modelcontextprotocol/server-github@2025.4.8"],
        env={"OTHER": "x", "GITHUB_PERSONAL_ACCESS_TOKEN": GHP},
    )
    out = list(secrets.check(s))
    assert [(f.rule, f.severity) for f in out] == [("plaintext-secret", "critical")]
    assert out[0].line == 32
    assert out[0].pointer == "/mcpServers/gh/env/GITHUB_PERSONAL_ACCESS_TOKEN"
    assert out[0].evidence.startswith("GITHUB_PERSONAL_ACCESS_TOKEN=ghp_")
    assert "…" in out[0].evidence
    assert "${GITHUB_PERSONAL_ACCESS_TOKEN}" in out[0].fix
    assert_never_leaks(out, GHP)


@pytest.mark.parametrize(
    "value",
    [
        "${GITHUB_TOKEN}",
        "${env:GITHUB_TOKEN}",
        "${input:github-token}",
        "$GITHUB_TOKEN",
        "${keyring:github/token}",
        "%GITHUB_TOKEN%",
        "{env:GITHUB_TOKEN}",
        "op://vault/gh/token",
    ],
)
def test_references_are_not_findings(value: str) -> None:
    """Values that name a secret kept elsewhere are never findings."""
    assert list(secrets.check(srv("gh", "npx", ["x@1.0.0"], env={"GITHUB_TOKEN": value}))) == []


def test_reference_inside_header_is_fine() -> None:
    """Bearer ${TOKEN} in a header is a reference, not a literal."""
    s = srv("r", url="https://mcp.example.com", headers={"Authorization": "Bearer ${API_TOKEN}"})
    assert list(secrets.check(s)) == []


def test_published_aws_example_is_not_a_finding() -> None:
    """AWS's documented example key is not flagged at any severity."""
    s = srv(
        "aws",
        "uvx",
        ["awslabs.aws-api-mcp-server==1.0.0"],
        env={
            "AWS_ACCESS_KEY_ID": "AKIAIOSFODNN7EXAMPLE",
            "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        },
    )
    assert list(secrets.check(s)) == []


def test_real_shaped_aws_key_is_critical() -> None:
    """A real-shaped AWS access key id is critical."""
    out = list(secrets.check(srv("aws", "uvx", ["x==1"], env={"AWS_ACCESS_KEY_ID": AWS_ID})))
    assert [(f.rule, f.severity) for f in out] == [("plaintext-secret", "critical")]
    assert_never_leaks(out, AWS_ID)


@pytest.mark.parametrize(
    "value",
    [
        "your-token-here",
        "<YOUR_TOKEN>",
        "xxxxxxxxxxxxxxxxxxxx",
        "changeme",
        "true",
        "8080",
        "/home/me/key.json",
    ],
)
def test_placeholders_and_non_secrets_under_secret_names(value: str) -> None:
    """Placeholders, flags, ports and paths under a *_TOKEN name are not findings."""
    assert list(secrets.check(srv("x", "npx", ["x@1.0.0"], env={"API_TOKEN": value}))) == []


def test_unknown_random_literal_under_secret_name_is_medium() -> None:
    """A long random literal under *_SECRET is medium even without a vendor rule."""
    out = list(secrets.check(srv("x", "npx", ["x@1.0.0"], env={"CLIENT_SECRET": RANDOM})))
    assert [(f.rule, f.severity) for f in out] == [("plaintext-secret", "medium")]
    assert_never_leaks(out, RANDOM)


def test_random_literal_under_harmless_name_is_fine() -> None:
    """The same random string under a harmless name (a workspace id) is not a finding."""
    assert list(secrets.check(srv("x", "npx", ["x@1.0.0"], env={"WORKSPACE_ID": RANDOM}))) == []


def test_password_env_var() -> None:
    """A literal password under a *_PASSWORD name is flagged and masked."""
    out = list(secrets.check(srv("x", "npx", ["x@1.0.0"], env={"DB_PASSWORD": "Tr0ub4dor&3x"})))
    assert rules(out) == ["plaintext-secret"]
    assert_never_leaks(out, "Tr0ub4dor&3x")


def test_secret_in_args_flag_value() -> None:
    """--api-key VALUE in args is found, on the value's line."""
    s = srv("x", "npx", ["-y", "some-mcp@1.2.3", "--api-key", OPENAI])
    out = list(secrets.check(s))
    assert [(f.rule, f.severity, f.line) for f in out] == [("plaintext-secret", "critical", 16)]
    assert_never_leaks(out, OPENAI)


def test_secret_in_docker_env_arg() -> None:
    """`docker` run -e NAME=value carries the secret in args."""
    s = srv("d", "docker", ["run", "-i", "--rm", "-e", f"GITHUB_TOKEN={GHP}", "img@sha256:ab"])
    out = list(secrets.check(s))
    assert rules(out) == ["plaintext-secret"]
    assert out[0].pointer.endswith("/args/4")
    assert_never_leaks(out, GHP)


def test_bearer_header_literal() -> None:
    """A literal bearer token in headers is high and masked."""
    token = "abcd1234efgh5678ijkl9012mnop"
    s = srv("r", url="https://mcp.example.com/mcp", headers={"Authorization": f"Bearer {token}"})
    out = list(secrets.check(s))
    assert [(f.rule, f.severity, f.line) for f in out] == [("plaintext-secret", "high", 41)]
    assert_never_leaks(out, token)


def test_api_key_header_by_name() -> None:
    """A random literal in an X-API-Key header is a finding by its name."""
    s = srv("r", url="https://mcp.example.com/mcp", headers={"X-API-Key": RANDOM})
    out = list(secrets.check(s))
    assert rules(out) == ["plaintext-secret"]
    assert_never_leaks(out, RANDOM)


def test_query_string_key_in_url() -> None:
    """?api_key= in a remote URL is found and masked."""
    key = "abcd1234efgh5678ijkl9012"
    out = list(secrets.check(srv("r", url=f"https://mcp.example.com/sse?api_key={key}")))
    assert rules(out) == ["plaintext-secret"]
    assert out[0].line == 50
    assert_never_leaks(out, key)


def test_password_in_url_userinfo() -> None:
    """A password in an https URL's userinfo is found and masked."""
    out = list(secrets.check(srv("r", url="https://alice:hunter2pass@mcp.example.com/mcp")))
    assert rules(out) == ["plaintext-secret"]
    assert_never_leaks(out, "hunter2pass")


def test_token_split_into_url_userinfo() -> None:
    """A token used as the URL user name (git-style) is still a credential."""
    url = f"https://x-access-token:{GHP}@mcp.example.com/mcp"
    out = list(secrets.check(srv("r", "npx", ["-y", "mcp-remote@0.1.29", url])))
    assert rules(out) == ["plaintext-secret"]
    assert out[0].severity == "critical"
    assert_never_leaks(out, GHP)


def test_production_postgres_url_is_critical() -> None:
    """The classic postgresql://admin:…@…/production argument is critical, masked."""
    pw = "S3cretPassw0rd!"
    url = f"postgresql://admin:{pw}@db.internal.example.com:5432/production"
    s = srv("pg", "npx", ["-y", "@modelcontextprotocol/server-postgres@0.6.2", url])
    out = list(secrets.check(s))
    assert [(f.rule, f.severity) for f in out] == [("db-url-password", "critical")]
    assert out[0].line == 15
    assert "****" in out[0].evidence
    assert "db.internal.example.com" in out[0].message
    assert "portcullis sql --db-env" in out[0].fix
    assert_never_leaks(out, pw)


def test_local_database_url_is_high() -> None:
    """A loopback database with an inline password is high, not critical."""
    env = {"DATABASE_URL": "postgres://app:devpass12@localhost:5432/app"}
    out = list(secrets.check(srv("pg", "uvx", ["postgres-mcp==0.3.0"], env=env)))
    assert [(f.rule, f.severity) for f in out] == [("db-url-password", "high")]
    assert_never_leaks(out, "devpass12")


def test_local_database_named_production_is_critical() -> None:
    """A loopback host with a production-looking database name is still critical."""
    env = {"DATABASE_URL": "mysql://root:devpass12@127.0.0.1/shop_prod"}
    out = list(secrets.check(srv("db", "uvx", ["mysql-mcp==1.0"], env=env)))
    assert [(f.rule, f.severity) for f in out] == [("db-url-password", "critical")]


@pytest.mark.parametrize(
    ("url", "pw"),
    [
        ("mongodb+srv://u:Pa55wordX@cluster0.abcd.mongodb.net/app", "Pa55wordX"),
        ("redis://:p4ssw0rdX@cache.example.com:6379/0", "p4ssw0rdX"),
        ("mssql://sa:Str0ngPassX@sql.example.com/db", "Str0ngPassX"),
        ("jdbc:postgresql://db.example.com:5432/app?user=a&password=Secr3tpwX", "Secr3tpwX"),
        ("jdbc:mysql://u:Secr3tpwY@db.example.com/app", "Secr3tpwY"),
        ("Server=sql.example.com;Database=app;User Id=sa;Password=Secr3tpwZ;", "Secr3tpwZ"),
    ],
)
def test_database_url_forms(url: str, pw: str) -> None:
    """MongoDB, Redis, MSSQL, JDBC and ADO connection strings with passwords are found."""
    out = list(secrets.check(srv("db", "uvx", ["db-mcp==1.0"], env={"DB": url})))
    assert rules(out) == ["db-url-password"]
    assert out[0].severity == "critical"
    assert_never_leaks(out, pw)


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://app:${DB_PASSWORD}@db.example.com/app",
        "postgresql://app@localhost/app",
        "postgresql://localhost/app",
        "postgresql://user:<password>@host/db",
    ],
)
def test_database_urls_without_literal_password(url: str) -> None:
    """No password, a referenced one or a placeholder is not a finding."""
    assert list(secrets.check(srv("db", "uvx", ["db-mcp==1.0"], env={"DATABASE_URL": url}))) == []


def test_plain_server_has_no_secret_findings() -> None:
    """`python3` server.py with ordinary env is clean."""
    s = srv("x", "python3", ["server.py"], env={"LOG_LEVEL": "debug", "PORT": "8080"})
    assert list(secrets.check(s)) == []


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("GITHUB_TOKEN_SCOPES", "repo,read:org,workflow"),
        ("SESSION_STORE", "redis-cluster-primary"),
        ("AUTH_MODE", "client_credentials_flow"),
        ("TOKEN_URL", "https://auth.example.com/token"),
    ],
)
def test_settings_under_secret_names_are_not_findings(name: str, value: str) -> None:
    """Word lists, modes and URLs under credential-like names are settings, not secrets."""
    assert list(secrets.check(srv("x", "npx", ["x@1.0.0"], env={name: value}))) == []


def test_api_key_header_passed_as_argument() -> None:
    """A bridge's "--header", "X-API-Key: value" argument is found by the header name."""
    s = srv(
        "b",
        "npx",
        ["-y", "mcp-remote@0.1.29", "https://mcp.example.com", "--header", f"X-API-Key: {RANDOM}"],
    )
    out = list(secrets.check(s))
    assert [(f.rule, f.line) for f in out] == [("plaintext-secret", 17)]
    assert_never_leaks(out, RANDOM)
