"""Fixtures for package vetting: servers, recorded registry answers, live reachability."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx2
import pytest

from portcullis.scan.model import PackageRef, Server
from portcullis.scan.vet.registries import Registry, RegistryUnknown, npm_registry, pypi_registry

DATA = Path(__file__).parent / "data"
NPM_BASE = "https://npm.test.invalid/"
PYPI_BASE = "https://pypi.test.invalid/"
FS = "@modelcontextprotocol/server-filesystem"


def make_server(name: str = "fs", file: str = "/tmp/proj/.mcp.json") -> Server:
    """A stdio server entry whose package argument sits on line 7."""
    return Server(
        name=name,
        client="claude-code",
        scope="project",
        file=Path(file),
        pointer=f"/mcpServers/{name}",
        line=5,
        transport="stdio",
        command="npx",
        args=["-y", "pkg"],
        positions={"": 5, "/args/1": 7},
    )


def npm_ref(name: str, version: str | None = None, *, pinned: bool | None = None) -> PackageRef:
    """An npm reference as ``npx -y name@version`` would give."""
    spec = f"{name}@{version}" if version else name
    exact = pinned if pinned is not None else bool(version and version[0].isdigit())
    return PackageRef("npm", name, version, exact, spec, "/args/1")


def pypi_ref(name: str, version: str | None = None) -> PackageRef:
    """A PyPI reference as ``uvx name==version`` would give."""
    spec = f"{name}=={version}" if version else name
    return PackageRef("pypi", name, version, version is not None, spec, "/args/1")


def recorded(name: str, base: str) -> Any:
    """A recorded registry answer with its placeholder host pointed at ``base``."""
    return json.loads((DATA / name).read_text().replace("{registry}", base))


@dataclass
class Replay:
    """Serves recorded answers through ``httpx2.MockTransport`` and logs every request."""

    advisories: tuple[int, Any] = (405, None)
    overrides: dict[str, httpx2.Response] = field(default_factory=dict)
    seen: list[str] = field(default_factory=list)

    def handler(self, request: httpx2.Request) -> httpx2.Response:
        url = str(request.url)
        self.seen.append(f"{request.method} {url}")
        if url in self.overrides:
            return self.overrides[url]
        if url == f"{NPM_BASE}-/npm/v1/security/advisories/bulk" and request.method == "POST":
            status, body = self.advisories
            return (
                httpx2.Response(status, json=body)
                if body is not None
                else (httpx2.Response(status))
            )
        if url == NPM_BASE + quote(FS, safe="@"):
            return httpx2.Response(
                200, json=recorded("npm-modelcontextprotocol__server-filesystem.json", NPM_BASE)
            )
        for pkg in ("pycrypto", "mcp-server-time"):
            if url == f"{PYPI_BASE}pypi/{pkg}/json":
                return httpx2.Response(200, json=recorded(f"pypi-{pkg}.json", PYPI_BASE))
        tail = url.rsplit("/", 1)[-1]
        for local in DATA.iterdir():
            if local.suffix in {".tgz", ".whl"} and (local.name.endswith(tail)):
                return httpx2.Response(200, content=local.read_bytes())
        return httpx2.Response(404)

    def client(self) -> httpx2.Client:
        """A client whose only transport is this replay."""
        return httpx2.Client(transport=httpx2.MockTransport(self.handler))


@pytest.fixture
def replay(monkeypatch: pytest.MonkeyPatch) -> Replay:
    """Recorded answers, with the registries pointed at test hosts through the environment."""
    monkeypatch.setenv("NPM_CONFIG_REGISTRY", NPM_BASE)
    monkeypatch.setenv("PIP_INDEX_URL", PYPI_BASE + "simple/")
    return Replay()


@pytest.fixture
def cache_dir() -> Iterator[Path]:
    """A fresh cache directory (its parent is private; vetting creates it ``0700``)."""
    with tempfile.TemporaryDirectory(prefix="pc-vet-") as tmp:
        yield Path(tmp) / "cache"


@pytest.fixture
def no_network() -> httpx2.Client:
    """A client that fails the test if anything tries to use it."""

    def refuse(request: httpx2.Request) -> httpx2.Response:
        pytest.fail(f"offline vetting made a request: {request.method} {request.url}")

    return httpx2.Client(transport=httpx2.MockTransport(refuse))


@dataclass(frozen=True)
class Live:
    """The machine's real registries, known to answer."""

    npm: Registry
    pypi: Registry


_LIVE: list[Live | str] = []


@pytest.fixture
def live() -> Live:
    """The user's configured registries when reachable (checked once per session), else skip."""
    if not _LIVE:
        _LIVE.append(_probe())
    got = _LIVE[0]
    if isinstance(got, str):
        print(f"live registry tests skipped: {got}")
        pytest.skip(got)
    return got


def _probe() -> Live | str:
    now = datetime.now(UTC)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            npm = npm_registry(FS, env=os.environ, home=Path.home(), cache_dir=Path(tmp), now=now)
        pypi = pypi_registry(env=os.environ, home=Path.home())
    except RegistryUnknown as exc:
        return str(exc)
    try:
        with httpx2.Client(timeout=5) as client:
            for url in (npm.url + quote(FS, safe="@"), f"{pypi.url}pypi/mcp/json"):
                status = client.get(url).status_code
                if status != 200:
                    return f"{url} answered HTTP {status}"
    except httpx2.HTTPError as exc:
        return f"registries unreachable: {exc}"
    return Live(npm, pypi)


Factory = Callable[..., Server]
