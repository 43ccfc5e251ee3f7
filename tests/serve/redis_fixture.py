"""Redis fixtures of the ``portcullis serve`` tests, for a conftest to import.

``redis_url``: the throw-away server of scripts/redis-test-server.sh. CI (.ci/run) starts it
once and exports ``PORTCULLIS_TEST_REDIS_URL``; without it the fixture starts a server itself
for the session and stops it after. Without redis-server installed the Redis tests fail under
CI (``CI`` set) and are skipped, saying why, elsewhere.

``redis_clean``: a unique key prefix for one test (``portcullis-test:<hex>:``); the test's keys
are deleted after it, so tests never see each other's keys and the shared server stays small.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

__all__ = ["REDIS_SCRIPT", "redis_clean", "redis_url"]

REPO = Path(__file__).resolve().parents[2]
REDIS_SCRIPT = REPO / "scripts" / "redis-test-server.sh"
# Generous, never asserted on: only a bound so a broken server fails a test instead of hanging.
TIMEOUT = 60.0

# One server for the whole process even when several modules register the fixture.
_lock = threading.Lock()
_started: dict[str, str] = {}
_users = 0


def _parse_exports(text: str) -> dict[str, str]:
    values = {}
    for line in text.splitlines():
        if line.startswith("export ") and "=" in line:
            name, value = line[len("export ") :].split("=", 1)
            values[name] = value.strip("'")
    return values


def _start() -> str:
    global _users
    with _lock:
        if not _started:
            done = subprocess.run(
                ["bash", str(REDIS_SCRIPT), "start"],
                capture_output=True,
                text=True,
                timeout=TIMEOUT,
                check=False,
                stdin=subprocess.DEVNULL,
            )
            if done.returncode != 0:
                pytest.fail(
                    f"scripts/redis-test-server.sh start failed:\n{done.stderr}", pytrace=False
                )
            _started.update(_parse_exports(done.stdout))
        _users += 1
        return _started["PORTCULLIS_TEST_REDIS_URL"]


def _stop() -> None:
    global _users
    with _lock:
        _users -= 1
        if _users > 0 or not _started:
            return
        subprocess.run(
            ["bash", str(REDIS_SCRIPT), "stop", _started["PC_REDIS_DIR"]],
            capture_output=True,
            timeout=TIMEOUT,
            check=False,
            stdin=subprocess.DEVNULL,
        )
        _started.clear()


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """The test Redis server's URL (CI's server, else one started for this session)."""
    url = os.environ.get("PORTCULLIS_TEST_REDIS_URL", "")
    if url:
        yield url
        return
    if shutil.which("redis-server") is None:
        missing = (
            "Redis is not installed (no redis-server on PATH): `apt-get install redis-server`, "
            "or set PORTCULLIS_TEST_REDIS_URL to a server made by scripts/redis-test-server.sh"
        )
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the Redis tests: {missing}", pytrace=False)
        print(f"skipping the Redis tests: {missing}")
        pytest.skip(missing)
    url = _start()
    try:
        yield url
    finally:
        _stop()


@pytest.fixture
def redis_clean(redis_url: str) -> Iterator[str]:
    """A key prefix of this test's own; its keys are deleted after the test."""
    import redis

    prefix = f"portcullis-test:{secrets.token_hex(6)}:"
    yield prefix
    client = redis.Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=5)
    try:
        keys = list(client.scan_iter(match=prefix + "*", count=500))
        if keys:
            client.delete(*keys)
    except redis.RedisError:
        pass  # a test that stopped Redis on purpose, or a broken server: nothing to clean
    finally:
        client.close()
