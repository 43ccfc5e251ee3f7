"""The API key store: keys made once, kept as hashes, verified, scoped and revoked live."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from portcullis._exceptions import ConfigError
from portcullis.serve.keys import KeyStore, default_keys_path


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_create_and_verify(tmp_path: Path) -> None:
    """A created key verifies as a 'key' principal of that name, with no server limit."""
    store = KeyStore.load(tmp_path / "keys.json")
    key = store.create("ci")
    assert re.fullmatch(r"pcl_[0-9a-f]{16}_[0-9a-f]{64}", key)  # 256-bit secret
    principal = store.verify(key)
    assert principal is not None
    assert (principal.name, principal.kind, principal.servers) == ("ci", "key", None)
    assert store.create("other") != key


def test_file_stores_no_key(tmp_path: Path) -> None:
    """The keys file holds the hash, never the key or its secret, and is private (0600)."""
    path = tmp_path / "keys.json"
    key = KeyStore.load(path).create("ci")
    data = path.read_bytes()
    secret = key.rsplit("_", 1)[1]
    assert key.encode() not in data
    assert secret.encode() not in data
    assert os.stat(path).st_mode & 0o777 == 0o600
    record = json.loads(data)["keys"][0]
    assert record["hash"].startswith("sha256:")
    assert set(record) == {"name", "id", "hash", "servers", "created"}


def test_scope_carried_into_principal(tmp_path: Path) -> None:
    """A key's server scope becomes Principal.servers."""
    store = KeyStore.load(tmp_path / "keys.json")
    key = store.create("ci", ["files", "db-*", "files"])
    principal = store.verify(key)
    assert principal is not None
    assert principal.servers == ("files", "db-*")
    assert [e.servers for e in store.entries()] == [("files", "db-*")]


def test_wrong_keys_refused(tmp_path: Path) -> None:
    """A changed secret, an unknown id or a malformed key verifies as None."""
    store = KeyStore.load(tmp_path / "keys.json")
    key = store.create("ci")
    flipped = key[:-1] + ("0" if key[-1] != "0" else "1")
    secret = key.split("_")[2]
    for bad in (flipped, f"pcl_{'0' * 16}_{secret}", key + "0", key.upper(), "", "pcl_", key[4:]):
        assert store.verify(bad) is None, bad


def test_revoke_seen_by_live_store(tmp_path: Path) -> None:
    """Revoking in another store (process) takes effect in a running one after its recheck."""
    path = tmp_path / "keys.json"
    clock = Clock()
    KeyStore.load(path).create("ci")
    key = KeyStore.load(path).create("bot")
    live = KeyStore(path, clock=clock)
    assert live.verify(key) is not None
    KeyStore.load(path).revoke("bot")
    clock.now += 1.5
    assert live.verify(key) is None
    assert [e.name for e in live.entries()] == ["ci"]


def test_new_key_seen_by_live_store(tmp_path: Path) -> None:
    """A key created after the server started is accepted without a restart."""
    path = tmp_path / "keys.json"
    clock = Clock()
    live = KeyStore(path, clock=clock)
    assert live.entries() == []
    key = KeyStore.load(path).create("late")
    clock.now += 1.5
    assert live.verify(key) is not None


def test_duplicate_name_and_replace(tmp_path: Path) -> None:
    """Creating an existing name fails; --replace makes a new key and retires the old one."""
    store = KeyStore.load(tmp_path / "keys.json")
    old = store.create("ci")
    with pytest.raises(ConfigError, match="already exists"):
        store.create("ci")
    new = store.create("ci", ["files"], replace=True)
    assert store.verify(old) is None
    principal = store.verify(new)
    assert principal is not None
    assert principal.servers == ("files",)
    assert len(store.entries()) == 1


def test_revoke_unknown(tmp_path: Path) -> None:
    """Revoking a name that does not exist is a ConfigError naming it."""
    store = KeyStore.load(tmp_path / "keys.json")
    with pytest.raises(ConfigError, match="nobody"):
        store.revoke("nobody")


@pytest.mark.parametrize("name", ["", "has space", "-dash", "x" * 65, "a\nb", "ünï"])
def test_bad_names(tmp_path: Path, name: str) -> None:
    """Names must be short, printable, without spaces."""
    with pytest.raises(ConfigError):
        KeyStore.load(tmp_path / "keys.json").create(name)


@pytest.mark.parametrize(
    "content",
    [
        b"{not json",
        b'{"version": 2, "keys": []}',
        b'{"version": 1, "keys": [{"name": "x"}]}',
        b"[]",
    ],
)
def test_malformed_file(tmp_path: Path, content: bytes) -> None:
    """A malformed keys file is a ConfigError that names the file."""
    path = tmp_path / "keys.json"
    path.write_bytes(content)
    path.chmod(0o600)
    with pytest.raises(ConfigError, match=re.escape(str(path))):
        KeyStore.load(path)


def test_broken_file_fails_closed_at_run_time(tmp_path: Path) -> None:
    """A keys file that turns malformed while serving accepts no key until it is fixed."""
    path = tmp_path / "keys.json"
    clock = Clock()
    key = KeyStore.load(path).create("ci")
    good = path.read_bytes()
    live = KeyStore(path, clock=clock)
    assert live.verify(key) is not None
    path.write_bytes(b"{broken")
    clock.now += 1.5
    assert live.verify(key) is None
    path.write_bytes(good)
    clock.now += 1.5
    assert live.verify(key) is not None


def test_writable_file_refused(tmp_path: Path) -> None:
    """A keys file others can write is refused (they could add a key of their own)."""
    path = tmp_path / "keys.json"
    KeyStore.load(path).create("ci")
    path.chmod(0o666)
    with pytest.raises(ConfigError, match="writable by others"):
        KeyStore.load(path)


def test_default_path_in_state_dir(home: Path) -> None:
    """Without a path the store lives at <state dir>/keys.json."""
    assert default_keys_path() == home / "keys.json"
    store = KeyStore.load()
    store.create("ci")
    assert (home / "keys.json").exists()
