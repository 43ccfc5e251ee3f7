"""Compiling a policy file: the DESIGN example, defaults merging, fail-closed and unimplemented."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from portcullis._exceptions import PolicyError
from portcullis.policy import (
    Launch,
    Rules,
    ServerRequests,
    load_policy,
    unimplemented_keys,
)

DESIGN_EXAMPLE = Path(__file__).parent / "data" / "design_example.yaml"


def load(path: Path):
    return load_policy(path, use_cache=False)


def test_design_example_validates():
    """The DESIGN §4 example policy (placeholders filled in) loads and compiles."""
    policy = load(DESIGN_EXAMPLE)
    assert list(policy.servers) == ["files", "db", "web"]
    assert policy.digest == hashlib.sha256(DESIGN_EXAMPLE.read_bytes()).hexdigest()
    assert policy.source == str(DESIGN_EXAMPLE)


def test_design_example_compiles_rules_and_launch():
    """The example's files server keeps its rules, launch, roots and server_requests."""
    files = load(DESIGN_EXAMPLE).servers["files"]
    assert files.tools == Rules(
        default="deny",
        allow=("read_text_file", "list_directory", "search_*", "get_file_info"),
        confirm=("write_file", "edit_file", "move_file"),
        deny=("*delete*",),
    )
    assert files.resources == Rules(default="allow", deny=("file:///etc/*",))
    assert files.prompts == Rules(default="allow")
    assert files.server_requests == ServerRequests(
        sampling="deny", elicitation="allow", roots="policy"
    )
    assert files.roots == ("/srv/project",)
    assert files.launch == Launch(
        command="npx",
        args=("-y", "@modelcontextprotocol/server-filesystem@2026.8.31", "/srv/project"),
        env={"GITHUB_TOKEN": "${env:GITHUB_TOKEN}"},
    )
    assert files.max_message_bytes == 67108864


def test_design_example_has_no_unimplemented_keys():
    """Every key of the design example, serve: included, is enforced by this version."""
    policy = load(DESIGN_EXAMPLE)
    assert policy.servers["files"].unimplemented == ()
    assert policy.servers["db"].unimplemented == ()
    assert policy.servers["web"].unimplemented == ()
    assert policy.unimplemented == ()
    assert unimplemented_keys(policy) == []


def test_design_example_argument_guards_compile():
    """The example's paths, sql and urls blocks reach the compiled server policies."""
    policy = load(DESIGN_EXAMPLE)
    files, db, web = (policy.servers[n] for n in ("files", "db", "web"))
    assert files.roots == ("/srv/project",)
    assert files.paths.arguments == ("path", "paths", "source", "destination")
    assert db.sql is not None
    assert db.sql.dialect == "postgres"
    assert "api_keys" in db.sql.deny_tables
    assert web.urls is not None
    assert web.urls.allow_hosts == ("*.python.org", "docs.example.com")


def test_read_only_paths_compile(write_policy):
    """paths.read_only reaches the compiled policy (run refuses it without a sandbox)."""
    policy = load(
        write_policy(
            "version: 1\nservers:\n  a:\n    tools: {default: allow}\n"
            "    paths: {roots: [/srv], read_only: true}\n"
        )
    )
    assert policy.servers["a"].unimplemented == ()
    assert policy.servers["a"].paths.read_only is True


def test_design_example_audit_and_approvals():
    """The example's audit and approvals blocks reach the compiled settings."""
    policy = load(DESIGN_EXAMPLE)
    assert policy.audit.path == "~/.local/state/portcullis/audit.jsonl"
    assert policy.audit.arguments == "digest"
    assert policy.audit.rotate_bytes == 104857600
    assert policy.approvals.channels == ("console",)
    assert policy.approvals.timeout_s == 120.0


def test_builtin_defaults_are_not_unimplemented(write_policy):
    """Built-in redact/injection/pin defaults are not listed when the file does not write them."""
    policy = load(write_policy("version: 1\nservers:\n  a: {tools: {default: allow}}\n"))
    assert policy.servers["a"].redact == ("secrets",)
    assert policy.servers["a"].injection == "flag"
    assert policy.servers["a"].pin is True
    assert unimplemented_keys(policy) == []


def test_switched_off_guards_are_not_unimplemented(write_policy):
    """`redact: []`, `injection: off` and `pin: false` ask for nothing this version lacks."""
    policy = load(
        write_policy("""
        version: 1
        defaults: {redact: [], injection: "off", pin: false, tools: {default: allow}}
        servers:
          a: {}
    """)
    )
    assert policy.servers["a"].redact == ()
    assert policy.servers["a"].injection == "off"
    assert policy.servers["a"].pin is False
    assert unimplemented_keys(policy) == []


def test_server_override_clears_an_inherited_unimplemented_key(write_policy):
    """Redaction, injection handling and pinning are enforced now: none is listed."""
    policy = load(
        write_policy("""
        version: 1
        defaults: {redact: [secrets, pii], injection: block, pin: true, tools: {default: allow}}
        servers:
          quiet: {redact: []}
          loud: {}
    """)
    )
    assert policy.servers["quiet"].unimplemented == ()
    assert policy.servers["loud"].unimplemented == ()
    assert policy.servers["loud"].redact == ("secrets", "pii")
    assert policy.servers["quiet"].redact == ()


def test_sandbox_in_defaults_reaches_inheriting_servers(write_policy):
    """A `defaults.sandbox` block applies to every server that does not write its own."""
    policy = load(
        write_policy("""
        version: 1
        defaults:
          tools: {default: allow}
          paths: {roots: [/srv]}
          sandbox: {required: true}
        servers:
          a: {}
          b: {paths: {roots: [/opt]}, sandbox: {required: false}}
    """)
    )
    a, b = policy.servers["a"].sandbox, policy.servers["b"].sandbox
    assert a is not None and a.required and a.profile == "binary" and a.network == "none"
    assert b is not None and not b.required
    assert policy.servers["a"].roots == ("/srv",)
    assert policy.servers["b"].roots == ("/opt",)


def test_defaults_are_merged_into_every_server(write_policy):
    """Servers inherit every default key they do not set themselves."""
    policy = load(
        write_policy("""
        version: 1
        defaults:
          mode: observe
          max_message_bytes: 1024
          tools: {default: deny, allow: [read_*]}
          prompts: {default: deny}
          server_requests: {sampling: allow}
        servers:
          a: {command: x}
    """)
    )
    a = policy.servers["a"]
    assert a.mode == "observe"
    assert a.max_message_bytes == 1024
    assert a.tools == Rules(default="deny", allow=("read_*",))
    assert a.prompts == Rules(default="deny")
    assert a.server_requests == ServerRequests(sampling="allow")
    assert policy.defaults.tools == Rules(default="deny", allow=("read_*",))
    assert policy.defaults.name == "defaults"


def test_server_key_replaces_the_default_block_whole(write_policy):
    """A server's block replaces the default's entirely: unset keys fall back to built-ins."""
    policy = load(
        write_policy("""
        version: 1
        defaults:
          tools: {default: deny, allow: [read_*], deny: [rm]}
          server_requests: {sampling: allow, roots: deny}
        servers:
          a:
            tools: {default: allow}
            server_requests: {elicitation: deny}
            mode: observe
          b: {}
    """)
    )
    a, b = policy.servers["a"], policy.servers["b"]
    assert a.tools == Rules(default="allow")  # not merged with read_* / rm
    assert a.server_requests == ServerRequests(sampling="deny", elicitation="deny", roots="policy")
    assert a.mode == "observe"
    assert b.tools == Rules(default="deny", allow=("read_*",), deny=("rm",))
    assert b.server_requests == ServerRequests(sampling="allow", roots="deny")
    assert b.mode == "enforce"


def test_server_without_tools_is_refused(write_policy):
    """A server with no tools block (and none in defaults) fails closed at load time."""
    path = write_policy("""
        version: 1
        servers:
          good: {tools: {default: allow}}
          files:
            command: npx
    """)
    with pytest.raises(PolicyError) as info:
        load(path)
    assert (info.value.line, info.value.key) == (4, "servers.files")
    assert "has no `tools` block" in str(info.value)


def test_defaults_tools_satisfy_fail_closed(write_policy):
    """A tools block in defaults is enough for servers that set none."""
    policy = load(
        write_policy("""
        version: 1
        defaults: {tools: {default: confirm}}
        servers:
          files: {command: npx}
    """)
    )
    assert policy.servers["files"].tools == Rules(default="confirm")


def test_no_servers_defaults_allow_tools(write_policy):
    """A file with no servers and no defaults.tools guards `run -- CMD` like the built-in."""
    policy = load(write_policy("version: 1\n"))
    assert policy.servers == {}
    assert policy.defaults.tools == Rules(default="allow")


def test_http_upstream_is_compiled(write_policy):
    """url/headers become the Launch of an HTTP upstream, header references unresolved."""
    policy = load(
        write_policy("""
        version: 1
        servers:
          remote:
            url: https://mcp.example.com/mcp
            headers: {Authorization: "Bearer ${env:TOKEN}"}
            tools: {default: deny}
    """)
    )
    assert policy.servers["remote"].launch == Launch(
        url="https://mcp.example.com/mcp", headers={"Authorization": "Bearer ${env:TOKEN}"}
    )


def test_server_without_launch_is_allowed(write_policy):
    """A server entry may carry only rules (its command then comes after `run --`)."""
    policy = load(write_policy("version: 1\nservers:\n  a: {tools: {default: allow}}\n"))
    assert policy.servers["a"].launch == Launch()


def test_roots_expand_home_and_normalise(write_policy, isolated):
    """`~` in paths.roots becomes the home directory; roots are sent to clients as file URIs."""
    policy = load(
        write_policy("""
        version: 1
        servers:
          a:
            tools: {default: allow}
            paths: {roots: [~/project/, /srv/./data]}
    """)
    )
    assert policy.servers["a"].roots == (str(isolated / "project"), "/srv/data")


def test_redact_duplicates_are_collapsed(write_policy):
    """A redaction kind listed twice is compiled once, in order."""
    policy = load(write_policy("version: 1\ndefaults: {redact: [pii, secrets, pii]}\n"))
    assert policy.defaults.redact == ("pii", "secrets")


def test_serve_block_is_compiled(write_policy):
    """`serve` compiles into ServeSettings and is no longer an unimplemented key."""
    policy = load(
        write_policy("""
        version: 1
        defaults: {redact: [], injection: "off", pin: false}
        servers:
          files: {tools: {default: allow}}
        serve:
          auth: {api_keys: true}
          identities: {alice: {servers: [files, "*"], confirm: ["*"]}}
          allowed_origins: [https://app.example.com]
    """)
    )
    assert policy.unimplemented == ()
    assert policy.servers["files"].unimplemented == ()
    assert unimplemented_keys(policy) == []
    assert policy.serve is not None
    (alice,) = policy.serve.identities
    assert (alice.name, alice.servers, alice.confirm) == ("alice", ("files", "*"), ("*",))
    assert policy.serve.allowed_origins == ("https://app.example.com",)


def test_launch_expands_home_in_command_and_cwd(write_policy, isolated):
    """A leading `~` in command and cwd is expanded (no shell sees them); args stay verbatim."""
    policy = load(
        write_policy("""
        version: 1
        servers:
          a:
            command: ~/bin/server
            args: [~/data]
            cwd: ~/work
            tools: {default: allow}
    """)
    )
    launch = policy.servers["a"].launch
    assert launch.command == str(isolated / "bin" / "server")
    assert launch.cwd == str(isolated / "work")
    assert launch.args == ("~/data",)
