"""Secret references: ${env:…}, ${file:…}, ${keyring:…}, escaping, and errors that never leak."""

from __future__ import annotations

import keyring
import keyring.backends.fail
import keyring.core
import pytest
from keyring.backend import KeyringBackend
from keyring.errors import KeyringError, PasswordDeleteError

from portcullis._exceptions import ConfigError
from portcullis.policy import resolve_env
from portcullis.policy.refs import Reference, check_syntax, parse

SECRET = "s3cr3t-VALUE-do-not-print"


class MemoryKeyring(KeyringBackend):
    """An in-memory keyring backend (real OS keyrings are a boundary these tests cannot run)."""

    priority = 1

    def __init__(self) -> None:
        super().__init__()
        self.entries: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.entries.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.entries[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        if self.entries.pop((service, username), None) is None:
            raise PasswordDeleteError(username)


class BrokenKeyring(MemoryKeyring):
    """A backend that fails with a message that must not reach the user."""

    def get_password(self, service: str, username: str) -> str | None:
        raise KeyringError(f"backend exploded while holding {SECRET}")


@pytest.fixture
def use_keyring():
    """Install a keyring backend for one test and put the previous one back."""
    # keyring keeps its backend in a module global; saving it avoids probing the real OS
    # keyring (get_keyring() would) just to restore it.
    previous = keyring.core._keyring_backend

    def install(backend: KeyringBackend) -> KeyringBackend:
        keyring.set_keyring(backend)
        return backend

    yield install
    keyring.core._keyring_backend = previous


# ---- env -------------------------------------------------------------------------------------


def test_whole_env_reference(monkeypatch):
    """`${env:NAME}` becomes the variable's value."""
    monkeypatch.setenv("GITHUB_TOKEN", SECRET)
    assert resolve_env({"GITHUB_TOKEN": "${env:GITHUB_TOKEN}"}) == {"GITHUB_TOKEN": SECRET}


def test_references_inside_text(monkeypatch):
    """References may sit inside text, several to a value."""
    monkeypatch.setenv("USER_", "ann")
    monkeypatch.setenv("PASS_", SECRET)
    env = {"AUTH": "Bearer ${env:PASS_}", "DSN": "pg://${env:USER_}:${env:PASS_}@db/x"}
    assert resolve_env(env) == {"AUTH": f"Bearer {SECRET}", "DSN": f"pg://ann:{SECRET}@db/x"}


def test_plain_values_pass_through():
    """Values without references (and lone dollars) are unchanged."""
    env = {"A": "plain", "B": "costs $5", "C": "$$HOME", "D": "", "E": "{x}$"}
    assert resolve_env(env) == env


def test_double_dollar_brace_escapes_a_literal():
    """`$${` is a literal `${`, resolved to `${` and never looked up."""
    assert resolve_env({"A": "$${env:NOT_LOOKED_UP}", "B": "x$${y}z"}) == {
        "A": "${env:NOT_LOOKED_UP}",
        "B": "x${y}z",
    }


def test_missing_env_names_variable_and_key(monkeypatch):
    """A missing variable is a ConfigError naming the variable and the key."""
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    with pytest.raises(ConfigError) as info:
        resolve_env({"TOKEN": "${env:NOT_SET_ANYWHERE}"})
    assert str(info.value) == "env.TOKEN: ${env:NOT_SET_ANYWHERE} is not set in the environment"


def test_error_does_not_leak_resolved_parts(monkeypatch):
    """When one reference of a value fails, the parts already resolved are not shown."""
    monkeypatch.setenv("PASS_", SECRET)
    monkeypatch.delenv("USER_", raising=False)
    with pytest.raises(ConfigError) as info:
        resolve_env({"DSN": "pg://${env:PASS_}:${env:USER_}@db"})
    assert SECRET not in str(info.value)
    assert "${env:USER_}" in str(info.value)
    assert info.value.__cause__ is None


def test_header_value_with_line_break_is_refused_without_leaking(monkeypatch):
    """A resolved header value with a newline is refused, and the value is not shown."""
    monkeypatch.setenv("TOKEN_", f"{SECRET}\r\nX-Injected: 1")
    with pytest.raises(ConfigError) as info:
        resolve_env({"Authorization": "Bearer ${env:TOKEN_}"}, label="headers")
    assert str(info.value) == "headers.Authorization: the resolved value contains a line break"


def test_malformed_reference_at_resolve_time():
    """Bad syntax reaching resolve_env (a Launch built by hand) is a ConfigError too."""
    with pytest.raises(ConfigError, match=r"env\.A: unknown reference kind 'vault'"):
        resolve_env({"A": "${vault:x}"})


# ---- file ------------------------------------------------------------------------------------


def test_file_reference_strips_one_newline(tmp_path):
    """`${file:PATH}` reads the file and strips exactly one trailing newline."""
    (tmp_path / "token").write_text(f"{SECRET}\n")
    (tmp_path / "two").write_text("a\n\n")
    (tmp_path / "crlf").write_bytes(b"b\r\n")
    env = {
        "A": f"${{file:{tmp_path}/token}}",
        "B": f"${{file:{tmp_path}/two}}",
        "C": f"${{file:{tmp_path}/crlf}}",
    }
    assert resolve_env(env) == {"A": SECRET, "B": "a\n", "C": "b"}


def test_file_reference_expands_home(isolated):
    """`~` in a file reference is the user's home directory."""
    (isolated / ".token").write_text(SECRET)
    assert resolve_env({"T": "${file:~/.token}"}) == {"T": SECRET}


def test_unreadable_file_is_a_config_error(tmp_path):
    """A file that cannot be read is a ConfigError naming the key and the path."""
    with pytest.raises(ConfigError) as info:
        resolve_env({"T": f"${{file:{tmp_path}/missing}}"})
    assert str(info.value).startswith(f"env.T: ${{file:{tmp_path}/missing}}: cannot read")


def test_non_utf8_file_does_not_leak(tmp_path):
    """A binary secret file is refused without echoing its bytes."""
    (tmp_path / "bin").write_bytes(b"\xff\xfe" + SECRET.encode())
    with pytest.raises(ConfigError, match="is not UTF-8 text") as info:
        resolve_env({"T": f"${{file:{tmp_path}/bin}}"})
    assert SECRET not in str(info.value)


# ---- keyring ---------------------------------------------------------------------------------


def test_keyring_reference(use_keyring):
    """`${keyring:service/name}` reads the entry from the keyring backend."""
    backend = use_keyring(MemoryKeyring())
    backend.set_password("github", "alice", SECRET)
    assert resolve_env({"T": "${keyring:github/alice}"}) == {"T": SECRET}


def test_keyring_service_may_contain_slashes(use_keyring):
    """The name is after the last slash, so a URL-like service works."""
    backend = use_keyring(MemoryKeyring())
    backend.set_password("https://api.example.com", "bot", SECRET)
    assert resolve_env({"T": "${keyring:https://api.example.com/bot}"}) == {"T": SECRET}


def test_missing_keyring_entry(use_keyring):
    """A missing entry is a ConfigError naming the service and name."""
    use_keyring(MemoryKeyring())
    with pytest.raises(ConfigError, match="no such entry in the keyring") as info:
        resolve_env({"T": "${keyring:github/bob}"})
    assert "'github'" in str(info.value)
    assert "'bob'" in str(info.value)


def test_no_keyring_backend(use_keyring):
    """With no usable backend the error says the keyring is unavailable."""
    use_keyring(keyring.backends.fail.Keyring())
    with pytest.raises(ConfigError, match="the keyring is unavailable"):
        resolve_env({"T": "${keyring:github/alice}"})


def test_keyring_errors_do_not_leak(use_keyring):
    """A backend error's message is not passed on (it could echo data)."""
    use_keyring(BrokenKeyring())
    with pytest.raises(ConfigError) as info:
        resolve_env({"T": "${keyring:github/alice}"})
    assert SECRET not in str(info.value)
    assert "KeyringError" in str(info.value)


# ---- syntax ----------------------------------------------------------------------------------


def test_parse_splits_text_and_references():
    """parse() yields literal text and Reference parts in order."""
    assert parse("a ${env:X} b $${c} ${file:/k} ${keyring:s/n}") == [
        "a ",
        Reference("env", "X"),
        " b ${c} ",
        Reference("file", "/k"),
        " ",
        Reference("keyring", "s/n"),
    ]


@pytest.mark.parametrize(
    "value",
    [
        "${env:}",
        "${env:1X}",
        "${env:A-B}",
        "${file:}",
        "${file:rel}",
        "${keyring:x}",
        "${keyring:/x}",
        "${keyring:x/}",
        "${nope:x}",
        "${x}",
        "${env:X",
        "a ${",
    ],
)
def test_bad_syntax_is_a_value_error(value):
    """check_syntax rejects malformed references without resolving anything."""
    with pytest.raises(ValueError, match=r"\S"):
        check_syntax(value)
