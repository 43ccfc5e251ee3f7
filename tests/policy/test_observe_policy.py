"""The observe-mode keys of the policy: `mode`, the `observe:` block and `sql.allow_tables`."""

from __future__ import annotations

import pytest

from portcullis._exceptions import PolicyError
from portcullis.policy import load_policy
from portcullis.policy.schema import policy_schema


def test_observe_block_defaults_keep_everything(write_policy):
    """Without an `observe:` block redaction, pins and approvals are all kept."""
    policy = load_policy(
        write_policy("""
            version: 1
            servers:
              a: {command: x, mode: observe, tools: {default: allow}}
        """),
        use_cache=False,
    )
    server = policy.servers["a"]
    assert server.mode == "observe"
    assert (server.observe.redaction, server.observe.pins, server.observe.approvals) == (
        "keep",
        "keep",
        "keep",
    )
    assert server.observe.relaxed() == ()


def test_server_observe_block_replaces_the_default(write_policy):
    """A server's `observe:` replaces the one in defaults whole, like every other key."""
    policy = load_policy(
        write_policy("""
            version: 1
            defaults:
              mode: observe
              observe: {redaction: relax, pins: relax}
            servers:
              a: {command: x, tools: {default: allow}}
              b:
                command: x
                tools: {default: allow}
                observe: {approvals: relax}
        """),
        use_cache=False,
    )
    assert policy.servers["a"].observe.relaxed() == ("redaction", "pins")
    assert policy.servers["b"].observe.relaxed() == ("approvals",)
    assert policy.servers["b"].mode == "observe"


def test_bad_observe_value_names_the_line(write_policy):
    """`observe.pins: off` is refused with the file, line and key path."""
    path = write_policy("""
        version: 1
        servers:
          a:
            command: x
            tools: {default: allow}
            observe:
              pins: loose
    """)
    with pytest.raises(PolicyError) as info:
        load_policy(path, use_cache=False)
    assert info.value.line == 7
    assert info.value.key == "servers.a.observe.pins"
    assert "'keep' or 'relax'" in str(info.value)


def test_unknown_observe_key_is_refused(write_policy):
    """A misspelt item of `observe:` is an error, not a silently kept default."""
    path = write_policy("""
        version: 1
        defaults:
          observe: {aprovals: relax}
    """)
    with pytest.raises(PolicyError) as info:
        load_policy(path, use_cache=False)
    assert "aprovals" in str(info.value)


def test_allow_tables_compiles(write_policy):
    """`sql.allow_tables` reaches the compiled policy in order."""
    policy = load_policy(
        write_policy("""
            version: 1
            servers:
              db:
                command: x
                tools: {default: allow}
                sql: {allow_tables: [orders, "public.report_*"]}
        """),
        use_cache=False,
    )
    sql = policy.servers["db"].sql
    assert sql is not None
    assert sql.allow_tables == ("orders", "public.report_*")


def test_empty_allow_table_name_is_refused(write_policy):
    """An empty table name in `allow_tables` is an error naming the key."""
    path = write_policy("""
        version: 1
        servers:
          db:
            command: x
            tools: {default: allow}
            sql: {allow_tables: [""]}
    """)
    with pytest.raises(PolicyError) as info:
        load_policy(path, use_cache=False)
    assert "servers.db.sql.allow_tables" in str(info.value)


def test_schema_describes_the_new_keys() -> None:
    """The JSON Schema lists `observe` and `sql.allow_tables`, so editors complete them."""
    schema = policy_schema()
    text = str(schema)
    assert "allow_tables" in text
    defs = schema.get("$defs", {})
    observe = defs["ObserveBlock"]
    assert set(observe["properties"]) == {"redaction", "pins", "approvals"}
    assert observe["additionalProperties"] is False


def test_cached_policy_keeps_observe_settings(write_policy):
    """A cached compiled policy loads with the same observe settings."""
    path = write_policy("""
        version: 1
        servers:
          a: {command: x, mode: observe, observe: {pins: relax}, tools: {default: allow}}
    """)
    first = load_policy(path)
    second = load_policy(path)
    assert first.servers["a"].observe == second.servers["a"].observe
    assert second.servers["a"].observe.pins == "relax"
