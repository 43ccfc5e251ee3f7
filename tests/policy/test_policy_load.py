"""Finding the policy, the built-in default, choosing a server, and the compiled-policy cache."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest

from portcullis._exceptions import ConfigError, PolicyError
from portcullis.policy import (
    BUILTIN_DIGEST,
    CompiledPolicy,
    Rules,
    builtin_policy,
    find_policy,
    load_policy,
    select_server,
)

ONE_SERVER = "version: 1\nservers:\n  files: {command: npx, tools: {default: deny}}\n"
TWO_SERVERS = ONE_SERVER + "  db: {command: portcullis, tools: {default: allow}}\n"


# ---- search order --------------------------------------------------------------------------


def test_nothing_found_means_builtin_default():
    """With no env var and no config file, load_policy(None) is the built-in default."""
    assert find_policy() is None
    policy = load_policy(None)
    assert policy == builtin_policy()
    assert policy.digest == BUILTIN_DIGEST
    assert policy.source is None
    assert policy.servers == {}


def test_builtin_default_allows_tools_and_lists_nothing():
    """The built-in default allows every tool and lists no unimplemented keys."""
    defaults = builtin_policy().defaults
    assert defaults.tools == Rules(default="allow")
    assert defaults.redact == ("secrets",)
    assert defaults.injection == "flag"
    assert defaults.pin is True
    assert defaults.unimplemented == ()
    assert builtin_policy().unimplemented == ()


def test_env_var_is_used(write_policy, monkeypatch):
    """$PORTCULLIS_POLICY names the policy file."""
    path = write_policy(ONE_SERVER, name="elsewhere/p.yaml")
    monkeypatch.setenv("PORTCULLIS_POLICY", str(path))
    assert find_policy() == path
    assert list(load_policy(None).servers) == ["files"]


def test_env_var_to_a_missing_file_fails_loudly(tmp_path, monkeypatch):
    """An explicit $PORTCULLIS_POLICY that does not exist is an error, not a fallback."""
    monkeypatch.setenv("PORTCULLIS_POLICY", str(tmp_path / "missing.yaml"))
    with pytest.raises(PolicyError, match="cannot read the policy file"):
        load_policy(None)


def test_xdg_config_file_is_used(write_policy, isolated):
    """$XDG_CONFIG_HOME/portcullis/policy.yaml is used when the env var is not set."""
    path = write_policy(ONE_SERVER, name="home/.config/portcullis/policy.yaml")
    assert find_policy() == path
    assert load_policy(None).source == str(path)


def test_home_config_is_used_without_xdg(write_policy, monkeypatch):
    """Without $XDG_CONFIG_HOME, ~/.config/portcullis/policy.yaml is used."""
    monkeypatch.delenv("XDG_CONFIG_HOME")
    path = write_policy(ONE_SERVER, name="home/.config/portcullis/policy.yaml")
    assert find_policy() == path


def test_custom_xdg_config_home(write_policy, tmp_path, monkeypatch):
    """A custom $XDG_CONFIG_HOME is respected (and ~/.config then ignored)."""
    write_policy(ONE_SERVER, name="home/.config/portcullis/policy.yaml")
    path = write_policy(TWO_SERVERS, name="xdg/portcullis/policy.yaml")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert find_policy() == path


def test_env_var_wins_over_config_dir(write_policy, monkeypatch):
    """$PORTCULLIS_POLICY comes before the config directory."""
    write_policy(ONE_SERVER, name="home/.config/portcullis/policy.yaml")
    path = write_policy(TWO_SERVERS, name="chosen.yaml")
    monkeypatch.setenv("PORTCULLIS_POLICY", str(path))
    assert find_policy() == path


def test_current_directory_is_never_searched(write_policy, tmp_path, monkeypatch):
    """A policy.yaml (or .config/…) in the current directory is not picked up."""
    repo = tmp_path / "cloned-repo"
    write_policy(ONE_SERVER, name="cloned-repo/policy.yaml")
    write_policy(ONE_SERVER, name="cloned-repo/portcullis/policy.yaml")
    write_policy(ONE_SERVER, name="cloned-repo/.config/portcullis/policy.yaml")
    write_policy(ONE_SERVER, name="cloned-repo/.portcullis/policy.yaml")
    monkeypatch.chdir(repo)
    assert find_policy() is None
    assert load_policy(None).digest == BUILTIN_DIGEST


def test_relative_xdg_config_home_is_ignored(write_policy, tmp_path, monkeypatch):
    """A relative $XDG_CONFIG_HOME (invalid per the spec) cannot make the cwd choose."""
    write_policy(ONE_SERVER, name="repo/cfg/portcullis/policy.yaml")
    monkeypatch.chdir(tmp_path / "repo")
    monkeypatch.setenv("XDG_CONFIG_HOME", "cfg")
    assert find_policy() is None


# ---- select_server ---------------------------------------------------------------------------


def test_select_named_server(write_policy):
    """A name picks that server."""
    policy = load_policy(write_policy(TWO_SERVERS))
    assert select_server(policy, "db", have_command=False).name == "db"


def test_select_unknown_server_lists_the_servers(write_policy):
    """A name missing from the policy is a ConfigError naming the file and the servers."""
    path = write_policy(TWO_SERVERS)
    policy = load_policy(path)
    with pytest.raises(ConfigError) as info:
        select_server(policy, "x", have_command=True)
    assert str(info.value) == f"server 'x' is not in the policy {path} (servers: files, db)"


def test_select_unknown_server_in_builtin_default():
    """A --server name with no policy file says no file was found."""
    with pytest.raises(ConfigError, match="no policy file was found"):
        select_server(builtin_policy(), "files", have_command=True)


def test_select_defaults_for_a_command_without_servers(write_policy):
    """No name, a command, and no servers: the defaults apply."""
    policy = load_policy(write_policy("version: 1\ndefaults: {mode: observe}\n"))
    server = select_server(policy, None, have_command=True)
    assert server is policy.defaults
    assert server.mode == "observe"


def test_select_the_only_server(write_policy):
    """No name and exactly one server: that server, with or without a command."""
    policy = load_policy(write_policy(ONE_SERVER))
    assert select_server(policy, None, have_command=False).name == "files"
    assert select_server(policy, None, have_command=True).name == "files"


def test_select_needs_a_name_among_several(write_policy):
    """No name and several servers: a ConfigError asking for --server."""
    policy = load_policy(write_policy(TWO_SERVERS))
    with pytest.raises(ConfigError, match="--server NAME"):
        select_server(policy, None, have_command=True)


def test_select_needs_a_command_or_a_server(write_policy):
    """No name, no command and no servers: nothing to launch is a ConfigError."""
    policy = load_policy(write_policy("version: 1\n"))
    with pytest.raises(ConfigError, match="defines no servers"):
        select_server(policy, None, have_command=False)


# ---- cache -----------------------------------------------------------------------------------


def cache_files(state: Path) -> list[Path]:
    return sorted((state / "cache").glob("policy-*.json"))


def test_cache_is_written_private(write_policy, state):
    """A load writes one cache entry, 0600 in a 0700 directory."""
    load_policy(write_policy(ONE_SERVER))
    [entry] = cache_files(state)
    assert entry.stat().st_mode & 0o777 == 0o600
    assert (state / "cache").stat().st_mode & 0o777 == 0o700
    decoded = msgspec.json.decode(entry.read_bytes(), type=CompiledPolicy)
    assert list(decoded.servers) == ["files"]


def test_cache_hit_equals_a_fresh_compile(write_policy, state):
    """A cached load returns exactly what compiling the file returns."""
    path = write_policy(
        Path(__file__).with_name("data").joinpath("design_example.yaml").read_text()
    )
    first = load_policy(path)
    assert cache_files(state)
    assert load_policy(path) == first == load_policy(path, use_cache=False)


def test_cache_hit_reports_the_path_it_was_loaded_from(write_policy):
    """The same bytes under another name share the entry but report their own source."""
    a = write_policy(ONE_SERVER, name="a.yaml")
    b = write_policy(ONE_SERVER, name="b.yaml")
    load_policy(a)
    assert load_policy(b).source == str(b)


def test_use_cache_false_touches_no_state(write_policy, state):
    """use_cache=False neither reads nor writes the cache."""
    load_policy(write_policy(ONE_SERVER), use_cache=False)
    assert not state.exists()


_PROBE = """
import sys
from portcullis.policy import load_policy
policy = load_policy(sys.argv[1])
print(sorted(policy.servers), [m for m in ("pydantic", "yaml") if m in sys.modules])
"""


def probe(path: Path) -> str:
    result = subprocess.run(
        [sys.executable, "-c", _PROBE, str(path)],
        capture_output=True,
        text=True,
        check=True,
        env=dict(os.environ),
    )
    return result.stdout.strip()


def test_cache_hit_imports_neither_pydantic_nor_yaml(write_policy):
    """In a fresh interpreter, a cache hit loads the policy without importing pydantic or yaml."""
    path = write_policy(TWO_SERVERS)
    assert probe(path) == "['db', 'files'] ['pydantic', 'yaml']"  # cold: compiles
    assert probe(path) == "['db', 'files'] []"  # warm: msgspec only


def test_corrupt_cache_entry_is_rebuilt(write_policy, state):
    """A damaged cache entry is ignored, the file recompiled and the entry rewritten."""
    path = write_policy(ONE_SERVER)
    expected = load_policy(path)
    [entry] = cache_files(state)
    for junk in (b"", b"{not json", b'{"digest": 5}', entry.read_bytes()[:40]):
        entry.write_bytes(junk)
        assert load_policy(path) == expected
        assert msgspec.json.decode(entry.read_bytes(), type=CompiledPolicy) == expected


def test_cache_entry_for_other_bytes_is_not_trusted(write_policy, state):
    """An entry whose digest does not match the file's bytes is ignored."""
    path = write_policy(ONE_SERVER)
    load_policy(path)
    [entry] = cache_files(state)
    other = load_policy(write_policy(TWO_SERVERS, name="other.yaml"), use_cache=False)
    entry.write_bytes(msgspec.json.encode(other))
    assert list(load_policy(path).servers) == ["files"]


def test_changed_file_invalidates_the_cache(write_policy, state):
    """Editing the file yields a new digest, a new entry and the new rules."""
    path = write_policy(ONE_SERVER)
    before = load_policy(path)
    path.write_text(TWO_SERVERS)
    after = load_policy(path)
    assert list(after.servers) == ["files", "db"]
    assert after.digest == hashlib.sha256(path.read_bytes()).hexdigest() != before.digest
    assert len(cache_files(state)) == 2


def test_invalid_file_is_never_served_from_cache(write_policy, state):
    """A file made invalid after a good load fails, even though an old entry exists."""
    path = write_policy(ONE_SERVER)
    load_policy(path)
    path.write_text(ONE_SERVER.replace("deny", "dney"))
    with pytest.raises(PolicyError, match=r"tools\.default"):
        load_policy(path)


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_shared_cache_directory_is_not_used(write_policy, state):
    """A cache directory others can write is neither read nor written (it could hold a forgery)."""
    path = write_policy(ONE_SERVER)
    load_policy(path)
    [entry] = cache_files(state)
    forged = load_policy(write_policy(TWO_SERVERS, name="f.yaml"), use_cache=False)
    entry.write_bytes(
        msgspec.json.encode(
            msgspec.structs.replace(forged, digest=hashlib.sha256(path.read_bytes()).hexdigest())
        )
    )
    (state / "cache").chmod(0o777)
    try:
        assert list(load_policy(path).servers) == ["files"]
    finally:
        (state / "cache").chmod(0o700)


def test_unusable_state_directory_still_loads(write_policy, tmp_path, monkeypatch):
    """When the state directory cannot be used, the policy loads without a cache."""
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    monkeypatch.setenv("PORTCULLIS_HOME", str(blocker))
    assert list(load_policy(write_policy(ONE_SERVER)).servers) == ["files"]
