"""Argument discovery and the argument guards, as the gateway and `portcullis check` use them."""

from __future__ import annotations

from pathlib import Path

import pytest

from portcullis.gateway.guards.arguments import ArgumentGuard
from portcullis.gateway.pipeline import Allow, Deny
from portcullis.policy.compiled import ArgConstraint, PathSettings, ServerPolicy, UrlSettings


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "project"
    path.mkdir()
    return path


def guard(root: Path, **policy: object) -> ArgumentGuard:
    server = ServerPolicy(name="files", roots=(str(root),), **policy)  # type: ignore[arg-type]
    return ArgumentGuard(server, protected=[], cwd=str(root))


def test_named_and_path_like_arguments_are_checked(root: Path) -> None:
    """A path-like argument is checked even when the policy does not list it."""
    g = guard(root)
    assert isinstance(g.check_call("read", {"path": str(root / "a.txt")}), Allow)
    assert isinstance(g.check_call("read", {"file_path": "/etc/passwd"}), Deny)
    assert isinstance(g.check_call("read", {"note": "/etc/passwd"}), Allow)  # not a path name


def test_listed_names_and_pointers(root: Path) -> None:
    """Names and JSON pointers the policy lists are checked wherever they are."""
    g = guard(root, paths=PathSettings(arguments=("target", "/opts/where")))
    assert isinstance(g.check_call("t", {"target": "/etc"}), Deny)
    assert isinstance(g.check_call("t", {"opts": {"where": "/etc"}}), Deny)


def test_nested_arrays_like_edits_path(root: Path) -> None:
    """Nested and array arguments (edits[].path, paths[]) are found."""
    g = guard(root)
    inside = str(root / "a")
    assert isinstance(g.check_call("edit", {"edits": [{"path": inside}, {"path": "/etc/x"}]}), Deny)
    assert isinstance(g.check_call("read_many", {"paths": [inside, "/root/.ssh/id_rsa"]}), Deny)
    assert isinstance(g.check_call("read_many", {"paths": [inside, inside]}), Allow)


def test_schema_marks_a_property_as_a_path(root: Path) -> None:
    """A property the input schema describes as a file is checked though its name is plain."""
    g = guard(root)
    schema = {
        "type": "object",
        "properties": {"where": {"type": "string", "description": "Path of the file to read"}},
    }
    assert isinstance(g.check_call("read", {"where": "/etc/passwd"}, schema), Deny)


def test_web_uri_in_a_uri_argument_is_not_a_path(root: Path) -> None:
    """An https:// value in a `uri` argument is not judged as a file path."""
    g = guard(root)
    assert isinstance(g.check_call("fetch", {"uri": "https://example.org/a"}), Allow)
    assert isinstance(g.check_call("fetch", {"uri": "file:///etc/passwd"}), Deny)


def test_resource_uri(root: Path) -> None:
    """resources/read: a file URI is confined, other schemes are not paths."""
    g = guard(root)
    assert isinstance(g.check_uri("file:///etc/passwd"), Deny)
    assert isinstance(g.check_uri((root / "a.txt").as_uri()), Allow)
    assert isinstance(g.check_uri("test://static/resource/1"), Allow)


def test_urls_checked_when_configured(root: Path) -> None:
    """With urls: configured, URL arguments are checked against schemes and hosts."""
    g = guard(
        root,
        urls=UrlSettings(
            arguments=("url",),
            schemes=("https",),
            allow_hosts=("docs.example.com",),
            deny_private=False,
        ),
    )
    assert isinstance(g.check_call("fetch", {"url": "https://docs.example.com/x"}), Allow)
    assert isinstance(g.check_call("fetch", {"url": "http://docs.example.com/x"}), Deny)
    assert isinstance(g.check_call("fetch", {"url": "https://evil.example.net/"}), Deny)


def test_constraints_by_tool_glob(root: Path) -> None:
    """Generic constraints apply to the tools their glob matches."""
    g = guard(root, constraints={"search_*": {"limit": ArgConstraint(min=1, max=50)}})
    assert isinstance(g.check_call("search_files", {"limit": 10}), Allow)
    denied = g.check_call("search_files", {"limit": 500})
    assert isinstance(denied, Deny)
    assert denied.rule == "constraints.range"
    assert isinstance(g.check_call("other", {"limit": 500}), Allow)


def test_sql_guard_on_sql_arguments(root: Path) -> None:
    """With sql: configured, the SQL argument must be one read-only statement."""
    from portcullis.policy.compiled import SqlSettings

    g = guard(root, sql=SqlSettings(arguments=("sql",), dialect="postgres"))
    assert isinstance(g.check_call("query", {"sql": "SELECT 1"}), Allow)
    assert isinstance(g.check_call("query", {"sql": "COMMIT; DROP TABLE users"}), Deny)
