"""Invalid policy files: every error names the file, the line and the key path."""

from __future__ import annotations

from pathlib import Path

import pytest

from portcullis._exceptions import ConfigError, PolicyError
from portcullis.policy import load_policy


def error_for(path: Path) -> PolicyError:
    with pytest.raises(PolicyError) as info:
        load_policy(path, use_cache=False)
    return info.value


def test_wrong_choice_names_line_and_key(write_policy):
    """A bad rule action reads `file:line: servers.files.tools.default: Input should be …`."""
    path = write_policy("""
        version: 1
        servers:
          files:
            command: npx
            tools:
              default: alow
    """)
    err = error_for(path)
    assert str(err).startswith(
        f"{path}:6: servers.files.tools.default: Input should be 'allow', 'deny' or 'confirm'"
    )
    assert (err.path, err.line, err.key) == (str(path), 6, "servers.files.tools.default")


def test_policy_error_is_a_config_error(write_policy):
    """PolicyError is a ConfigError, so the CLI turns it into exit status 2."""
    path = write_policy("version: 1\nservers: []\n")
    assert isinstance(error_for(path), ConfigError)


def test_typo_key_is_refused_with_a_hint(write_policy):
    """A misspelt key is an error at its line with a "did you mean" suggestion."""
    path = write_policy("""
        version: 1
        servers:
          files:
            tools: {default: deny}
            resorces: {default: allow}
    """)
    err = error_for(path)
    assert err.line == 5
    assert err.key == "servers.files.resorces"
    assert "unknown key (did you mean 'resources'?)" in str(err)


def test_nested_typo_in_a_later_guard_block_is_refused(write_policy):
    """Keys of blocks enforced later (sandbox.filesystem) are validated all the same."""
    path = write_policy("""
        version: 1
        defaults:
          tools: {default: allow}
          sandbox:
            filesystem:
              read_writ: [/tmp]
    """)
    err = error_for(path)
    assert (err.line, err.key) == (6, "defaults.sandbox.filesystem.read_writ")
    assert "did you mean 'read_write'?" in str(err)


def test_server_key_at_top_level_gets_a_placement_hint(write_policy):
    """`tools:` written at the top level says it belongs under defaults or a server."""
    path = write_policy("version: 1\ntools: {default: deny}\n")
    err = error_for(path)
    assert (err.line, err.key) == (2, "tools")
    assert "belongs under defaults: or under a server" in str(err)


def test_launch_key_in_defaults_gets_a_placement_hint(write_policy):
    """`command:` in defaults says launch keys belong in a server entry."""
    path = write_policy("version: 1\ndefaults:\n  command: npx\n")
    err = error_for(path)
    assert (err.line, err.key) == (3, "defaults.command")
    assert "belongs in a server entry" in str(err)


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("version: 2", "2"),
        ('version: "1"', "'1'"),
        ("version: 1.5", "1.5"),
        ("version: true", "True"),
    ],
)
def test_unknown_version_is_refused(write_policy, text, shown):
    """Any version but the integer 1 is refused with the exact "unsupported" message."""
    path = write_policy(f"{text}\nsomething_new: 1\n")
    err = error_for(path)
    assert str(err) == (
        f"{path}:1: version: unsupported policy version {shown}; "
        "this portcullis understands version 1"
    )


def test_missing_version_is_refused(write_policy):
    """A file without `version:` is refused, telling the author what to write."""
    err = error_for(write_policy("servers: {}\n"))
    assert err.key == "version"
    assert "version: 1" in str(err)


@pytest.mark.parametrize(
    ("text", "line", "key"),
    [
        (
            "version: 1\nservers:\n  a:\n    tools:\n      deny: [x]\n      default: deny\n"
            "      deny: [y]\n",
            7,
            "servers.a.tools.deny",
        ),
        (
            "version: 1\nservers:\n  a: {tools: {default: allow}}\n  a: {tools: {default: deny}}\n",
            4,
            "servers.a",
        ),
        ("version: 1\nservers: {}\nversion: 1\n", 3, "version"),
    ],
)
def test_duplicate_keys_are_refused(write_policy, text, line, key):
    """A duplicated key (which PyYAML would silently collapse) is an error at its second line."""
    err = error_for(write_policy(text))
    assert (err.line, err.key) == (line, key)
    assert "duplicate key" in str(err)
    assert "first at line" in str(err)


def test_yaml_syntax_error_names_the_line(write_policy):
    """A YAML syntax error reports the line where the parser stopped."""
    path = write_policy("version: 1\nservers:\n  a: {tools: [\n  b: 1\n")
    err = error_for(path)
    assert "YAML syntax error" in str(err)
    assert err.line is not None
    assert 3 <= err.line <= 4


def test_tab_indentation_is_a_syntax_error(write_policy):
    """A tab used for indentation is a YAML error at that line."""
    err = error_for(write_policy("version: 1\nservers:\n\ta: 1\n"))
    assert "YAML syntax error" in str(err)
    assert err.line == 3


@pytest.mark.parametrize("text", ["", "# only a comment\n", "---\n", "null\n"])
def test_empty_file_is_refused(write_policy, text):
    """An empty (or comment-only, or null) file is refused rather than treated as no policy."""
    err = error_for(write_policy(text))
    assert "the policy file is empty" in str(err)


@pytest.mark.parametrize(("text", "kind"), [("- a\n- b\n", "list"), ("just text\n", "value")])
def test_non_mapping_top_level_is_refused(write_policy, text, kind):
    """A top level that is a list or a scalar is refused at line 1."""
    err = error_for(write_policy(text))
    assert err.line == 1
    assert "the top level must be a mapping" in str(err)
    assert kind in str(err)


def test_missing_file_is_refused(tmp_path):
    """A file that does not exist is a PolicyError naming it."""
    path = tmp_path / "nope.yaml"
    err = error_for(path)
    assert str(err).startswith(f"{path}: cannot read the policy file")


def test_directory_is_refused(tmp_path):
    """A directory given as the policy file is a PolicyError, not a crash."""
    err = error_for(tmp_path)
    assert "cannot read the policy file" in str(err)


def test_non_utf8_file_names_the_line(tmp_path):
    """Bytes that are not UTF-8 are refused at the line they are on."""
    path = tmp_path / "policy.yaml"
    path.write_bytes(b"version: 1\nservers:\n  caf\xe9: {}\n")
    err = error_for(path)
    assert err.line == 3
    assert "not UTF-8" in str(err)


def test_number_for_text_suggests_quoting(write_policy):
    """A YAML number where text is needed says so, with the list index in the key path."""
    path = write_policy("""
        version: 1
        servers:
          web:
            command: srv
            args: [--port, 8080]
            tools: {default: allow}
    """)
    err = error_for(path)
    assert (err.line, err.key) == (5, "servers.web.args[1]")
    assert "YAML read 8080 as a number; quote it" in str(err)


def test_boolean_for_text_suggests_quoting(write_policy):
    """An env value of `yes` (a YAML boolean) is refused with a hint to quote it."""
    path = write_policy("""
        version: 1
        servers:
          web:
            command: srv
            env:
              DEBUG: yes
            tools: {default: allow}
    """)
    err = error_for(path)
    assert (err.line, err.key) == (6, "servers.web.env.DEBUG")
    assert "as a boolean; quote it" in str(err)


def test_empty_value_is_refused(write_policy):
    """`tools:` with nothing after it is an error, not a silently missing block."""
    path = write_policy("version: 1\nservers:\n  a:\n    tools:\n")
    err = error_for(path)
    assert (err.line, err.key) == (4, "servers.a.tools")
    assert "has no value" in str(err)


def test_tilde_value_is_null_and_refused(write_policy):
    """`cwd: ~` (YAML null, not the home directory) is refused with a hint to quote it."""
    path = write_policy("version: 1\nservers:\n  a:\n    command: x\n    cwd: ~\n")
    err = error_for(path)
    assert (err.line, err.key) == (5, "servers.a.cwd")
    assert 'quote "~"' in str(err)


def test_non_text_key_is_refused(write_policy):
    """A server named `on` (a YAML boolean) must be quoted."""
    path = write_policy("version: 1\nservers:\n  on: {tools: {default: allow}}\n")
    err = error_for(path)
    assert err.line == 3
    assert "quote it" in str(err)


@pytest.mark.parametrize(
    ("name", "reason"),
    [("a__b", "must not contain '__'"), ("bad.name", "only letters, digits")],
)
def test_bad_server_names_are_refused(write_policy, name, reason):
    """Server names are [A-Za-z0-9_-]+ without "__" (reserved for server__tool)."""
    path = write_policy(
        f"version: 1\nservers:\n  ok: {{tools: {{default: allow}}}}\n"
        f"  {name}: {{tools: {{default: allow}}}}\n"
    )
    err = error_for(path)
    assert (err.line, err.key) == (4, f"servers.{name}")
    assert reason in str(err)


def test_command_and_url_together_are_refused(write_policy):
    """A server is launched or reached over HTTP, not both; the error is at the server."""
    path = write_policy("""
        version: 1
        servers:
          a:
            command: x
            url: https://mcp.example.com/mcp
            tools: {default: allow}
    """)
    err = error_for(path)
    assert (err.line, err.key) == (3, "servers.a")
    assert "not both" in str(err)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://example.com/mcp", "http:// or https://"),
        ("example.com", "http:// or https://"),
        ("https://user:pw@example.com/", "credentials"),
    ],
)
def test_bad_urls_are_refused(write_policy, url, reason):
    """Upstream URLs must be http(s) with a host and no credentials in them."""
    path = write_policy(
        f"version: 1\nservers:\n  a:\n    url: {url}\n    tools: {{default: allow}}\n"
    )
    err = error_for(path)
    assert (err.line, err.key) == (4, "servers.a.url")
    assert reason in str(err)
    assert "pw" not in str(err).replace("https://user:pw@", "")


def test_headers_without_url_are_refused(write_policy):
    """Headers are for HTTP upstreams: without a url they are an error."""
    path = write_policy("""
        version: 1
        servers:
          a:
            command: x
            headers: {Authorization: "Bearer ${env:T}"}
            tools: {default: allow}
    """)
    assert "not both" in str(error_for(path))


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("${env:}", "not an environment variable name"),
        ("${vault:x}", "unknown reference kind"),
        ("${env:TOKEN", "unterminated"),
        ("${file:relative/path}", "absolute"),
        ("${keyring:nameonly}", "service/name"),
        ("${TOKEN}", "needs a kind"),
    ],
)
def test_bad_secret_reference_is_refused_at_load(write_policy, value, reason):
    """Reference syntax is checked at load time, at the line of the env key."""
    path = write_policy(
        f"version: 1\nservers:\n  a:\n    command: x\n    env:\n"
        f"      TOKEN: '{value}'\n    tools: {{default: allow}}\n"
    )
    err = error_for(path)
    assert (err.line, err.key) == (6, "servers.a.env.TOKEN")
    assert reason in str(err)


def test_bad_env_name_is_refused(write_policy):
    """An env key that is not a variable name is an error at its line."""
    path = write_policy(
        "version: 1\nservers:\n  a:\n    command: x\n    env:\n"
        "      1BAD: v\n    tools: {default: allow}\n"
    )
    err = error_for(path)
    assert (err.line, err.key) == (6, "servers.a.env.1BAD")


def test_rule_block_requires_default(write_policy):
    """A rule block must say its default, so an allow list never meets allow-everything."""
    path = write_policy("version: 1\nservers:\n  a:\n    tools:\n      allow: [read_*]\n")
    err = error_for(path)
    assert (err.line, err.key) == (4, "servers.a.tools.default")
    assert "required key missing" in str(err)


@pytest.mark.parametrize(
    ("text", "line", "key"),
    [
        ("defaults:\n  max_message_bytes: 0\n", 3, "defaults.max_message_bytes"),
        ("defaults:\n  max_message_bytes: 64MB\n", 3, "defaults.max_message_bytes"),
        ("defaults:\n  pin: 'yes'\n", 3, "defaults.pin"),
        ("defaults:\n  redact: [secrets, passwords]\n", 3, "defaults.redact[1]"),
        ("defaults:\n  injection: warn\n", 3, "defaults.injection"),
        ("defaults:\n  mode: audit\n", 3, "defaults.mode"),
        ("audit:\n  arguments: all\n", 3, "audit.arguments"),
        ("audit:\n  rotate_bytes: -1\n", 3, "audit.rotate_bytes"),
        ("approvals:\n  channels: [console, email]\n", 3, "approvals.channels[1]"),
        ("approvals:\n  channels: []\n", 3, "approvals.channels"),
        ("approvals:\n  timeout_s: 0\n", 3, "approvals.timeout_s"),
        (
            "defaults:\n  server_requests: {sampling: maybe}\n",
            3,
            "defaults.server_requests.sampling",
        ),
        ("defaults:\n  paths: {roots: [relative/dir]}\n", 3, "defaults.paths.roots[0]"),
        ("defaults:\n  sql: {allow_functions: some}\n", 3, "defaults.sql.allow_functions"),
        ("defaults:\n  sql: {dialect: 'Postgres SQL'}\n", 3, "defaults.sql.dialect"),
        ("defaults:\n  urls: {schemes: [ftp]}\n", 3, "defaults.urls.schemes[0]"),
        ("defaults:\n  sandbox: {profile: ruby}\n", 3, "defaults.sandbox.profile"),
        ("defaults:\n  sandbox: {network: open}\n", 3, "defaults.sandbox.network"),
        (
            "serve:\n  auth: {oauth: {issuer: x, audience: a, jwks_url: https://i/j}}\n",
            3,
            "serve.auth.oauth.issuer",
        ),
        (
            "serve:\n  allowed_origins: [https://app.example.com/path]\n",
            3,
            "serve.allowed_origins[0]",
        ),
        ("servers: []\n", 2, "servers"),
        ("defaults: [mode]\n", 2, "defaults"),
    ],
)
def test_every_block_is_validated(write_policy, text, line, key):
    """Keys of every block, enforced now or later, are validated with line and key path."""
    err = error_for(write_policy("version: 1\n" + text))
    assert (err.line, err.key) == (line, key), str(err)


def test_identity_naming_an_unknown_server_is_refused(write_policy):
    """serve.identities may only name servers the policy defines."""
    path = write_policy("""
        version: 1
        servers:
          files: {tools: {default: allow}}
        serve:
          identities:
            alice:
              servers: [files, db]
    """)
    err = error_for(path)
    assert (err.line, err.key) == (7, "serve.identities.alice.servers[1]")
    assert "'db' is not a server" in str(err)


def test_several_problems_are_all_listed(write_policy):
    """The first problem heads the error; the others follow with their own lines."""
    path = write_policy("""
        version: 1
        defaults:
          mode: loud
        servers:
          a:
            tols: {default: deny}
    """)
    message = str(error_for(path))
    assert message.startswith(f"{path}:3: defaults.mode:")
    assert f"{path}:6: servers.a.tols: unknown key (did you mean 'tools'?)" in message
    assert "and 1 more problem:" in message


def test_alias_bomb_is_refused(write_policy):
    """Nested aliases that expand exponentially are refused instead of hanging."""
    lines = ["version: 1", "x0: &a0 [a, a, a, a, a, a, a, a, a, a]"]
    lines += [f"x{i}: &a{i} [{', '.join(f'*a{i - 1}' for _ in range(10))}]" for i in range(1, 8)]
    err = error_for(write_policy("\n".join(lines) + "\n"))
    assert "anchors and aliases" in str(err)


def test_merge_keys_work_and_keep_lines(write_policy):
    """`<<: *anchor` merges are honoured and errors inside them point at the anchor's lines."""
    path = write_policy("""
        version: 1
        servers:
          a: &base
            command: x
            tools: {default: deny, allow: [read_*]}
          b:
            <<: *base
            command: y
    """)
    policy = load_policy(path, use_cache=False)
    assert policy.servers["b"].tools.allow == ("read_*",)
    assert policy.servers["b"].launch.command == "y"

    bad = write_policy(
        """
        version: 1
        servers:
          a: &base
            command: x
            tools: {default: deny}
          b:
            <<: *base
            comand: y
    """,
        name="bad.yaml",
    )
    err = error_for(bad)
    assert (err.line, err.key) == (8, "servers.b.comand")
