"""`portcullis keys create|list|revoke` as a user runs them (a real subprocess)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from portcullis.serve.keys import KeyStore


def keys(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PORTCULLIS_HOME": str(home)}
    return subprocess.run(
        [sys.executable, "-m", "portcullis", "keys", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def test_create_list_revoke(home: Path) -> None:
    """`create` prints the key once as the last word; list shows it; revoke removes it."""
    created = keys("create", "ci", "--server", "files", "--server", "db", home=home)
    assert created.returncode == 0, created.stderr
    key = created.stdout.split()[-1]
    assert created.stdout.rstrip("\n").splitlines()[-1].split()[-1] == key
    assert re.fullmatch(r"pcl_[0-9a-f]{16}_[0-9a-f]{64}", key)
    assert "not shown again" in created.stdout
    path = home / "keys.json"
    assert key.encode() not in path.read_bytes()
    principal = KeyStore.load(path).verify(key)
    assert principal is not None
    assert principal.servers == ("files", "db")

    listed = keys("list", home=home)
    assert listed.returncode == 0, listed.stderr
    assert "ci" in listed.stdout
    assert "files,db" in listed.stdout
    assert key not in listed.stdout
    assert "sha256" not in listed.stdout

    as_json = keys("list", "--json", home=home)
    assert as_json.returncode == 0, as_json.stderr
    (entry,) = json.loads(as_json.stdout)["keys"]
    assert entry["name"] == "ci"
    assert entry["servers"] == ["files", "db"]
    assert set(entry) == {"name", "id", "servers", "created"}
    assert key.split("_")[1] == entry["id"]

    revoked = keys("revoke", "ci", home=home)
    assert revoked.returncode == 0, revoked.stderr
    assert KeyStore.load(path).verify(key) is None
    assert keys("list", home=home).stdout == "no API keys\n"


def test_errors_exit_2(home: Path) -> None:
    """An unknown name to revoke, a duplicate create or a bad name: exit 2 with a message."""
    revoked = keys("revoke", "nobody", home=home)
    assert revoked.returncode == 2
    assert "nobody" in revoked.stderr
    assert revoked.stdout == ""
    assert keys("create", "ci", home=home).returncode == 0
    again = keys("create", "ci", home=home)
    assert again.returncode == 2
    assert "already exists" in again.stderr
    assert again.stdout == ""
    replaced = keys("create", "ci", "--replace", home=home)
    assert replaced.returncode == 0, replaced.stderr
    assert keys("create", "bad name", home=home).returncode == 2


def test_keys_file_option(home: Path, tmp_path: Path) -> None:
    """--keys F uses that file instead of the state directory's."""
    other = tmp_path / "elsewhere.json"
    created = keys("create", "ci", "--keys", str(other), home=home)
    assert created.returncode == 0, created.stderr
    assert other.exists()
    assert not (home / "keys.json").exists()
    listed = keys("list", "--json", "--keys", str(other), home=home)
    assert [e["name"] for e in json.loads(listed.stdout)["keys"]] == ["ci"]


def test_malformed_file_exit_2(home: Path) -> None:
    """A malformed keys file: exit 2 naming the file."""
    path = home / "keys.json"
    path.write_text("{oops")
    path.chmod(0o600)
    listed = keys("list", home=home)
    assert listed.returncode == 2
    assert str(path) in listed.stderr
