"""Registry discovery from the user's npm and pip configuration, and the fetcher's limits."""

from __future__ import annotations

import json
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx2
import pytest

from portcullis.scan.vet import registries
from portcullis.scan.vet.registries import (
    Fetcher,
    LookupFailed,
    Registry,
    RegistryUnknown,
    mask_url,
    npm_registry,
    pypi_registry,
)

NOW = datetime(2026, 11, 24, tzinfo=UTC)
REG = Registry("npm", "https://npm.test.invalid/", "test")


def npm(
    tmp_path: Path,
    env: dict[str, str],
    name: str = "pkg",
    run: bool = True,
) -> Registry:
    return npm_registry(
        name,
        env=env,
        home=tmp_path / "home",
        cache_dir=tmp_path / "cache",
        now=NOW,
        run=run,
    )


@pytest.fixture
def no_npm(monkeypatch: pytest.MonkeyPatch) -> None:
    """No npm or node on PATH, so only configuration files can answer."""
    monkeypatch.setattr("shutil.which", lambda _name: None)


def test_npm_env_wins(tmp_path: Path, no_npm: None) -> None:
    """NPM_CONFIG_REGISTRY beats every file and gains a trailing slash."""
    reg = npm(tmp_path, {"NPM_CONFIG_REGISTRY": "https://env.invalid/npm"})
    assert (reg.url, reg.source) == ("https://env.invalid/npm/", "NPM_CONFIG_REGISTRY")


def test_npmrc_order_and_scopes(tmp_path: Path, no_npm: None) -> None:
    """~/.npmrc names the registry; scoped registries apply to their scope only."""
    home = tmp_path / "home"
    home.mkdir()
    (home / ".npmrc").write_text("registry=https://user.invalid/\n@corp:registry=${CORP}\n")
    assert npm(tmp_path, {}).url == "https://user.invalid/"
    assert npm(tmp_path, {"CORP": "https://corp.invalid/r"}, "@corp/x").url == (
        "https://corp.invalid/r/"
    )
    assert npm(tmp_path, {}, "@other/x").url == "https://user.invalid/"


def test_project_npmrc_never_chooses_the_registry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A scanned repository's .npmrc (the scan's cwd, too) cannot redirect look-ups."""
    home, project = tmp_path / "home", tmp_path / "proj"
    home.mkdir()
    project.mkdir()
    (home / ".npmrc").write_text("registry=https://user.invalid/\n")
    (project / ".npmrc").write_text(
        "registry=https://attacker.invalid/\n@corp:registry=https://attacker.invalid/\n"
    )
    monkeypatch.chdir(project)
    assert npm(tmp_path, {}).url == "https://user.invalid/"
    assert npm(tmp_path, {}, "@corp/x").url == "https://user.invalid/"


def test_npm_is_asked_from_an_empty_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`npm config get registry` runs in a fresh empty folder, not the project or /tmp."""
    fake = tmp_path / "npm"
    fake.write_text(
        '#!/bin/sh\npwd > "$(dirname "$0")/cwd"\nls -A > "$(dirname "$0")/ls"\necho https://asked.invalid/\n'
    )
    fake.chmod(0o755)
    monkeypatch.setattr("shutil.which", lambda name: str(fake) if name == "npm" else None)
    monkeypatch.chdir(tmp_path)
    assert npm(tmp_path, {}).url == "https://asked.invalid/"
    cwd = (tmp_path / "cwd").read_text().strip()
    assert cwd not in (str(tmp_path), tempfile.gettempdir())
    assert (tmp_path / "ls").read_text() == ""


def test_global_npmrc_under_prefix(tmp_path: Path, no_npm: None) -> None:
    """$PREFIX/etc/npmrc is read after the user file."""
    (tmp_path / "prefix" / "etc").mkdir(parents=True)
    (tmp_path / "prefix" / "etc" / "npmrc").write_text("registry=https://global.invalid/\n")
    reg = npm(tmp_path, {"NPM_CONFIG_PREFIX": str(tmp_path / "prefix")})
    assert reg.url == "https://global.invalid/"


def test_npm_missing_means_unknown(tmp_path: Path, no_npm: None) -> None:
    """Without configuration or npm, the registry is unknown, with advice."""
    with pytest.raises(RegistryUnknown, match="npm is not installed"):
        npm(tmp_path, {})


def test_asking_npm_is_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`npm config get registry` runs once; its answer is reused for a day, even offline."""
    fake = tmp_path / "npm"
    fake.write_text('#!/bin/sh\necho ran >> "$(dirname "$0")/calls"\necho https://asked.invalid/\n')
    fake.chmod(0o755)
    monkeypatch.setattr("shutil.which", lambda name: str(fake) if name == "npm" else None)
    assert npm(tmp_path, {}).url == "https://asked.invalid/"
    assert npm(tmp_path, {}, run=False).url == "https://asked.invalid/"
    assert (tmp_path / "calls").read_text().count("ran") == 1
    cached = json.loads((tmp_path / "cache" / "npm-config-registry.json").read_text())
    assert cached["registry"] == "https://asked.invalid/"


def test_offline_never_runs_npm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Offline with nothing remembered, npm is not started."""
    monkeypatch.setattr("shutil.which", lambda _name: pytest.fail("looked for npm"))
    monkeypatch.setattr(registries, "_node_prefix", lambda: None)
    with pytest.raises(RegistryUnknown, match="offline"):
        npm(tmp_path, {}, run=False)


def test_pip_env_and_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """PIP_INDEX_URL, then uv's variables, then pip.conf; '/simple' is stripped."""
    home = tmp_path
    env = {"PIP_INDEX_URL": "https://pip.invalid/simple/"}
    assert pypi_registry(env=env, home=home).url == "https://pip.invalid/"
    assert (
        pypi_registry(env={"UV_DEFAULT_INDEX": "https://uv.invalid/x/simple"}, home=home).url
        == "https://uv.invalid/x/"
    )
    conf = tmp_path / "pip.conf"
    conf.write_text("[global]\nindex-url = https://conf.invalid/simple\n")
    monkeypatch.setattr(registries, "_pip_config_files", lambda env, home: [conf])
    reg = pypi_registry(env={}, home=home)
    assert (reg.url, reg.source) == ("https://conf.invalid/", str(conf))


def test_pip_default_and_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without configuration pip's own default is used; without pip it is unknown."""
    monkeypatch.setattr(registries, "_pip_config_files", lambda env, home: [])
    monkeypatch.setattr(registries, "_pip_default", lambda: "https://default.invalid/")
    assert pypi_registry(env={}, home=tmp_path).source == "pip's default index"
    monkeypatch.setattr(registries, "_pip_default", lambda: None)
    with pytest.raises(RegistryUnknown, match="pip is not importable"):
        pypi_registry(env={}, home=tmp_path)


def test_mask_url_hides_credentials() -> None:
    """User and password in an index URL never reach a message."""
    assert mask_url("https://me:s3cret@idx.invalid/simple") == "https://***@idx.invalid/simple"


def fetcher(
    handler: object, tmp_path: Path, *, offline: bool = False, now: datetime = NOW
) -> Fetcher:
    client = httpx2.Client(transport=httpx2.MockTransport(handler))  # type: ignore[arg-type]
    return Fetcher(client, tmp_path / "cache", offline=offline, now=now)


def test_cache_ttl(tmp_path: Path) -> None:
    """An answer is reused for 24 hours and fetched again after."""
    calls: list[str] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        calls.append(str(request.url))
        return httpx2.Response(200, json={"n": len(calls)})

    url = "https://npm.test.invalid/pkg"
    assert fetcher(handler, tmp_path).get_json(url, REG).data == {"n": 1}  # type: ignore[union-attr]
    later = fetcher(handler, tmp_path, now=NOW + timedelta(hours=23)).get_json(url, REG)
    assert later is not None and later.cached and later.data == {"n": 1}
    stale = fetcher(handler, tmp_path, now=NOW + timedelta(hours=25)).get_json(url, REG)
    assert stale is not None and stale.data == {"n": 2}
    assert oct((tmp_path / "cache").stat().st_mode & 0o777) == "0o700"
    assert all(oct(p.stat().st_mode & 0o777) == "0o600" for p in (tmp_path / "cache").iterdir())


def test_size_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An answer over the limit is not read."""
    monkeypatch.setattr(registries, "MAX_BYTES", 1000)
    big = httpx2.Response(200, content=b"[" + b"1," * 2000 + b"1]")
    with pytest.raises(LookupFailed, match="sent more than"):
        fetcher(lambda r: big, tmp_path).get_json("https://npm.test.invalid/big", REG)


def test_redirects_stay_on_the_host(tmp_path: Path) -> None:
    """A same-host redirect is followed; one to another host is refused."""

    def handler(request: httpx2.Request) -> httpx2.Response:
        if request.url.path == "/a":
            return httpx2.Response(301, headers={"location": "/b"})
        if request.url.path == "/b":
            return httpx2.Response(200, json=["b"])
        return httpx2.Response(302, headers={"location": "https://evil.invalid/x"})

    got = fetcher(handler, tmp_path).get_json("https://npm.test.invalid/a", REG)
    assert got is not None and got.data == ["b"]
    with pytest.raises(LookupFailed, match="another host"):
        fetcher(handler, tmp_path).get_json("https://npm.test.invalid/c", REG)


def test_unauthorised_says_so(tmp_path: Path) -> None:
    """A 401 names the status and suggests configuring access."""
    with pytest.raises(LookupFailed, match=r"HTTP 401.*configure access"):
        fetcher(lambda r: httpx2.Response(401), tmp_path).get_json(
            "https://npm.test.invalid/p", REG
        )


def test_network_error_text_never_shows_index_credentials(tmp_path: Path) -> None:
    """An httpx error quoting the URL has its user:token masked in the message."""
    reg = Registry("pypi", "https://me:tok-s3cret@idx.invalid/", "PIP_INDEX_URL")

    def handler(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ConnectError(f"cannot connect to {reg.url}pypi/x/json", request=request)

    with pytest.raises(LookupFailed) as caught:
        fetcher(handler, tmp_path).get_json(reg.url + "pypi/x/json", reg)
    assert "tok-s3cret" not in str(caught.value) and "***@" in str(caught.value)


def test_an_unusable_index_url_is_a_lookup_failure(tmp_path: Path) -> None:
    """A configured index URL httpx cannot use fails the look-up; it does not crash the scan."""
    reg = Registry("pypi", "https://me:tok-s3cret@[bad/", "PIP_INDEX_URL")
    with pytest.raises(LookupFailed) as caught:
        Fetcher(None, tmp_path / "cache", offline=False, now=NOW).get_json(
            reg.url + "pypi/x/json", reg
        )
    assert "tok-s3cret" not in str(caught.value)
