"""Where the user's registries are, and fetching from them with a cache and hard limits.

Look-ups go only to the registries the user's own npm and pip configuration names: nothing
here knows a registry host. npm: ``NPM_CONFIG_REGISTRY``, then ``registry=`` in the user and
global ``.npmrc`` files, else ``npm config get registry`` (run once from an empty folder,
cached). A scanned project's own ``.npmrc`` is never read: it belongs to the repository, which
may be hostile, and could send the look-ups (and the list of packages) to a host of its choosing
and answer "all clean". PyPI:
``PIP_INDEX_URL``/``UV_DEFAULT_INDEX``/``UV_INDEX_URL``, then ``index-url`` in pip's
configuration files, else pip's own default index.

Exceptions: :class:`RegistryUnknown` (no configuration and no tool to ask) and
:class:`LookupFailed` (network, HTTP status, size, redirect or JSON trouble); both carry a
message fit to show the user.
"""

from __future__ import annotations

import configparser
import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urljoin, urlsplit, urlunsplit

from portcullis._state import write_private

if TYPE_CHECKING:  # imported when first needed: offline scans never pay for it
    import httpx2

__all__ = [
    "CACHE_TTL",
    "MAX_BYTES",
    "TIMEOUT_S",
    "Answer",
    "Fetcher",
    "LookupFailed",
    "Registry",
    "RegistryUnknown",
    "mask_url",
    "npm_registry",
    "pypi_registry",
]

CACHE_TTL = timedelta(hours=24)
TIMEOUT_S = 10.0
MAX_BYTES = 20 * 1024 * 1024
MAX_ARCHIVE_BYTES = 100 * 1024 * 1024
_MAX_REDIRECTS = 3


class RegistryUnknown(Exception):
    """No configuration names the registry and the package tool could not be asked."""


class LookupFailed(Exception):
    """A registry look-up failed; the message says what, where, and what to do."""


@dataclass(frozen=True)
class Registry:
    """A registry base URL (always ending in ``/``) and where the setting came from."""

    ecosystem: Literal["npm", "pypi"]
    url: str
    source: str

    @property
    def shown(self) -> str:
        """The URL without any credentials, for messages."""
        return mask_url(self.url)

    @property
    def tool(self) -> str:
        """The registry's name in messages."""
        return "the npm registry" if self.ecosystem == "npm" else "the Python package index"


_USERINFO = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://)[^\s/@]+@")


def mask_url(url: str) -> str:
    """``url`` with any ``user:password@`` replaced by ``***@``."""
    try:
        parts = urlsplit(url)
    except ValueError:  # unparsable (a bad IPv6 literal): mask textually, never show it raw
        return _USERINFO.sub(r"\1***@", url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc="***@" + parts.netloc.rpartition("@")[2]))


def _base(url: str) -> str:
    url = url.strip()
    return url if url.endswith("/") else url + "/"


# --- npm ------------------------------------------------------------------------------------


def _read_npmrc(path: Path, env: Mapping[str, str]) -> dict[str, str]:
    """``key=value`` pairs of an npmrc file, with ``${VAR}`` expanded as npm does."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return {}
    out: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;" or "=" not in line:
            continue
        key, _, value = line.partition("=")
        value = value.strip().strip("\"'")
        value = re.sub(r"\$\{([^}]+)\}", lambda m: env.get(m.group(1), ""), value)
        out[key.strip()] = value
    return out


def _node_prefix() -> Path | None:
    node = shutil.which("node")
    if not node:
        return None
    bin_dir = Path(node).resolve().parent
    return bin_dir if sys.platform == "win32" else bin_dir.parent


def _npmrc_files(env: Mapping[str, str], home: Path) -> list[Path]:
    files = []
    files.append(
        Path(
            env.get("NPM_CONFIG_USERCONFIG") or env.get("npm_config_userconfig") or home / ".npmrc"
        )
    )
    global_rc = env.get("NPM_CONFIG_GLOBALCONFIG") or env.get("npm_config_globalconfig")
    if global_rc:
        files.append(Path(global_rc))
    else:
        prefix = env.get("NPM_CONFIG_PREFIX") or env.get("npm_config_prefix") or env.get("PREFIX")
        prefix_path = Path(prefix) if prefix else _node_prefix()
        if prefix_path is not None:
            files.append(prefix_path / "etc" / "npmrc")
    return files


def _ask_npm(cache_dir: Path, now: datetime, *, run: bool) -> str:
    """``npm config get registry``, remembered in ``cache_dir`` for a day.

    With ``run`` false (offline) only the remembered answer is used.
    """
    cached = cache_dir / "npm-config-registry.json"
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        got = json.loads(cached.read_text())
        if now - datetime.fromisoformat(got["fetched"]) < CACHE_TTL:
            return str(got["registry"])
    if not run:
        raise RegistryUnknown("the npm registry is unknown offline (npm was never asked)")
    npm = shutil.which("npm")
    if not npm:
        raise RegistryUnknown(
            "the npm registry is unknown: no NPM_CONFIG_REGISTRY, no registry= in any .npmrc, "
            "and npm is not installed to ask; set one or rerun with --offline"
        )
    try:
        # A fresh empty folder: npm reads the .npmrc of its working folder (the project), and
        # the shared temporary folder itself could hold one planted by another user.
        with tempfile.TemporaryDirectory(prefix="portcullis-npm-") as neutral:
            done = subprocess.run(
                [npm, "config", "get", "registry"],
                capture_output=True,
                text=True,
                timeout=30,
                cwd=neutral,
                check=False,
            )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RegistryUnknown(
            f"the npm registry is unknown: `npm config get registry` failed: "
            f"{exc}; rerun with --offline"
        ) from exc
    url = done.stdout.strip().splitlines()[-1].strip() if done.stdout.strip() else ""
    if done.returncode != 0 or not url.startswith(("https://", "http://")):
        raise RegistryUnknown(
            "the npm registry is unknown: `npm config get registry` answered "
            f"{url or done.stderr.strip()[:200]!r}; set NPM_CONFIG_REGISTRY or rerun with --offline"
        )
    _write_json(cached, {"fetched": now.isoformat(), "registry": url})
    return url


def npm_registry(
    package: str,
    *,
    env: Mapping[str, str],
    home: Path,
    cache_dir: Path,
    now: datetime,
    run: bool = True,
) -> Registry:
    """The registry the user's npm would use for ``package`` (scoped registries honoured).

    Only the user's configuration counts (environment, user and global npmrc, npm itself):
    never the scanned project's ``.npmrc``, which the repository controls.
    ``run`` false never starts npm (offline scans): only a remembered answer is used.
    """
    scope = package.split("/", 1)[0] if package.startswith("@") and "/" in package else None
    for key in ("NPM_CONFIG_REGISTRY", "npm_config_registry"):
        if env.get(key) and scope is None:
            return Registry("npm", _base(env[key]), key)
    rcs = [(path, _read_npmrc(path, env)) for path in _npmrc_files(env, home)]
    if scope is not None:
        for path, rc in rcs:
            if rc.get(f"{scope}:registry"):
                return Registry("npm", _base(rc[f"{scope}:registry"]), str(path))
        for key in ("NPM_CONFIG_REGISTRY", "npm_config_registry"):
            if env.get(key):
                return Registry("npm", _base(env[key]), key)
    for path, rc in rcs:
        if rc.get("registry"):
            return Registry("npm", _base(rc["registry"]), str(path))
    return Registry("npm", _base(_ask_npm(cache_dir, now, run=run)), "npm config get registry")


# --- PyPI -----------------------------------------------------------------------------------


def _pip_config_files(env: Mapping[str, str], home: Path) -> list[Path]:
    """Pip's configuration files, lowest precedence first (as ``pip config list`` reads)."""
    xdg_dirs = env.get("XDG_CONFIG_DIRS", "/etc/xdg").split(os.pathsep)
    files = [Path(d) / "pip" / "pip.conf" for d in xdg_dirs if d] + [Path("/etc/pip.conf")]
    if sys.platform == "win32":
        files.append(Path(env.get("APPDATA", home)) / "pip" / "pip.ini")
    elif sys.platform == "darwin":
        files.append(home / "Library" / "Application Support" / "pip" / "pip.conf")
    files.append(home / ".pip" / "pip.conf")
    files.append(Path(env.get("XDG_CONFIG_HOME") or home / ".config") / "pip" / "pip.conf")
    files.append(Path(sys.prefix) / ("pip.ini" if sys.platform == "win32" else "pip.conf"))
    if env.get("PIP_CONFIG_FILE") and env["PIP_CONFIG_FILE"] != os.devnull:
        files.append(Path(env["PIP_CONFIG_FILE"]))
    return files


def _pip_default() -> str | None:
    try:
        from pip._internal.models.index import PyPI  # pip is optional
    except Exception:  # pip missing or its internals moved: just unknown
        return None
    url = getattr(PyPI, "url", None)
    return url if isinstance(url, str) else None


def _strip_simple(index_url: str) -> str:
    url = index_url.strip().rstrip("/")
    if url.endswith("/simple"):
        url = url[: -len("/simple")]
    return _base(url)


def pypi_registry(*, env: Mapping[str, str], home: Path) -> Registry:
    """The package index pip (or uv) would use, as the base of its JSON API."""
    for key in ("PIP_INDEX_URL", "UV_DEFAULT_INDEX", "UV_INDEX_URL"):
        if env.get(key):
            return Registry("pypi", _strip_simple(env[key]), key)
    found: tuple[str, str] | None = None
    for path in _pip_config_files(env, home):
        parser = configparser.RawConfigParser()
        try:
            parser.read(path, encoding="utf-8")
        except (configparser.Error, OSError, UnicodeDecodeError):
            continue
        for section in ("global", "install"):
            if parser.has_option(section, "index-url"):
                found = (parser.get(section, "index-url"), str(path))
    if found:
        return Registry("pypi", _strip_simple(found[0]), found[1])
    default = _pip_default()
    if default is None:
        raise RegistryUnknown(
            "the Python package index is unknown: no PIP_INDEX_URL, no index-url in pip's "
            "configuration and pip is not importable to ask; set one or rerun with --offline"
        )
    return Registry("pypi", _base(default), "pip's default index")


# --- fetching -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """A registry's answer: ``status`` 200 with ``data``, or 404 (nothing there)."""

    url: str
    status: int
    data: Any
    cached: bool = False


def _write_json(path: Path, payload: Any) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    write_private(path, json.dumps(payload, separators=(",", ":")).encode("utf-8"))


class Fetcher:
    """JSON look-ups and downloads with a day-long cache, size limits and same-host redirects.

    Offline, it answers only from a fresh cache and returns ``None`` otherwise; it never
    touches the client.
    """

    def __init__(
        self,
        client: httpx2.Client | None,
        cache_dir: Path,
        *,
        offline: bool,
        now: datetime,
    ) -> None:
        self._client = client
        self._own = client is None
        self.cache_dir = cache_dir
        self.offline = offline
        self.now = now
        if client is None and not offline:
            self._client = self._new_client()  # made up front: look-ups run in threads

    def close(self) -> None:
        """Close the client if this fetcher made it."""
        if self._own and self._client is not None:
            self._client.close()

    @staticmethod
    def _new_client() -> httpx2.Client:
        import httpx2

        from portcullis._version import __version__

        return httpx2.Client(
            timeout=TIMEOUT_S,
            follow_redirects=False,
            headers={"User-Agent": f"portcullis/{__version__} (package vetting)"},
        )

    def _http(self) -> httpx2.Client:
        if self._client is None:  # offline never gets here: answers come from the cache
            raise LookupFailed("no network look-ups in offline mode")
        return self._client

    # cache

    @staticmethod
    def _digest(key: str) -> str:
        # the key holds the URL, which may carry index credentials: only its digest is kept
        return hashlib.sha256(key.encode()).hexdigest()

    def _cache_path(self, key: str) -> Path:
        return self.cache_dir / f"{self._digest(key)[:40]}.json"

    def _cached(self, key: str, url: str) -> Answer | None:
        path = self._cache_path(key)
        try:
            got = json.loads(path.read_text(encoding="utf-8"))
            fetched = datetime.fromisoformat(got["fetched"])
            if got["key"] != self._digest(key) or not (
                timedelta(0) <= self.now - fetched < CACHE_TTL
            ):
                return None
            return Answer(url, int(got["status"]), got["data"], cached=True)
        except (OSError, ValueError, KeyError, TypeError):
            return None  # missing or corrupt: fetch again

    def _store(self, key: str, answer: Answer) -> None:
        with contextlib.suppress(OSError):  # a read-only cache must not fail the scan
            _write_json(
                self._cache_path(key),
                {
                    "key": self._digest(key),
                    "url": mask_url(answer.url),
                    "fetched": self.now.isoformat(),
                    "status": answer.status,
                    "data": answer.data,
                },
            )

    # network

    def _send(
        self, method: str, url: str, registry: Registry, body: Any, limit: int, *, json_: bool
    ) -> tuple[int, bytes, str]:
        """One request, following only redirects that stay on the same host."""
        import httpx2

        try:
            origin = urlsplit(url)
        except ValueError:
            raise LookupFailed(
                f"{registry.tool} at {registry.shown} (from {registry.source}) is not a usable "
                "URL; fix it or rerun with --offline to skip look-ups"
            ) from None
        for _ in range(_MAX_REDIRECTS + 1):
            try:
                with self._http().stream(
                    method,
                    url,
                    json=body,
                    timeout=TIMEOUT_S,
                    follow_redirects=False,
                    headers={"Accept": "application/json"} if json_ else None,
                ) as response:
                    if response.is_redirect:
                        try:
                            target = urljoin(url, response.headers.get("location", ""))
                            parts = urlsplit(target)
                        except ValueError:
                            raise LookupFailed(
                                f"{registry.tool} at {registry.shown} redirected to an "
                                "unusable URL; not followed"
                            ) from None
                        if parts.hostname != origin.hostname or parts.scheme not in {
                            origin.scheme,
                            "https",
                        }:
                            raise LookupFailed(
                                f"{registry.tool} at {registry.shown} redirected "
                                f"{mask_url(url)} to another host ({parts.hostname}); not "
                                "followed. Rerun with --offline to skip look-ups"
                            )
                        url = target
                        continue
                    size = int(response.headers.get("content-length") or 0)
                    if size > limit:
                        raise LookupFailed(self._too_big(registry, url, limit))
                    chunks, total = [], 0
                    for chunk in response.iter_bytes():
                        total += len(chunk)
                        if total > limit:
                            raise LookupFailed(self._too_big(registry, url, limit))
                        chunks.append(chunk)
                    return response.status_code, b"".join(chunks), url
            except (httpx2.HTTPError, httpx2.InvalidURL) as exc:
                # httpx's text can quote the URL, and an index URL may carry a token
                reason = _USERINFO.sub(r"\1***@", str(exc)) or type(exc).__name__
                raise LookupFailed(
                    f"could not reach {registry.tool} at {registry.shown} "
                    f"(from {registry.source}): {reason}; rerun with "
                    "--offline to skip look-ups"
                ) from exc
        raise LookupFailed(f"{registry.tool} at {registry.shown} redirected too many times")

    @staticmethod
    def _too_big(registry: Registry, url: str, limit: int) -> str:
        return (
            f"{registry.tool} at {registry.shown} sent more than {limit // (1024 * 1024)} MB "
            f"for {mask_url(url)}; not read"
        )

    def _json(self, method: str, url: str, registry: Registry, body: Any = None) -> Answer | None:
        key = f"{method} {url} {json.dumps(body, sort_keys=True) if body is not None else ''}"
        cached = self._cached(key, url)
        if cached is not None or self.offline:
            return cached
        status, content, final = self._send(method, url, registry, body, MAX_BYTES, json_=True)
        if status in {404, 410}:
            answer = Answer(final, 404, None)
        elif status == 200:
            try:
                answer = Answer(final, 200, json.loads(content))
            except ValueError as exc:
                raise LookupFailed(
                    f"{registry.tool} at {registry.shown} answered {mask_url(url)} with "
                    f"something that is not JSON ({exc}); rerun with --offline to skip look-ups"
                ) from exc
        elif status in {405, 501} and method == "POST":
            answer = Answer(final, status, None)  # the endpoint is not offered: not a failure
        else:
            hint = "; configure access for it" if status in {401, 403} else ""
            raise LookupFailed(
                f"{registry.tool} at {registry.shown} answered HTTP {status} for "
                f"{mask_url(url)}{hint}; rerun with --offline to skip look-ups"
            )
        self._store(key, answer)
        return answer

    def get_json(self, url: str, registry: Registry) -> Answer | None:
        """GET a JSON document (``None`` only offline without a fresh cached answer)."""
        return self._json("GET", url, registry)

    def post_json(self, url: str, body: Any, registry: Registry) -> Answer | None:
        """POST a JSON body and read a JSON answer; 405/501 come back as that status."""
        return self._json("POST", url, registry, body)

    def download(self, url: str, registry: Registry, *, named_by: str) -> bytes:
        """An archive the registry's own answer (``named_by``) points to, never cached.

        Only ``https`` (or the registry's own scheme and host) is fetched; the caller checks
        the digest.
        """
        try:
            parts, base = urlsplit(url), urlsplit(registry.url)
        except ValueError:
            raise LookupFailed(f"{named_by} points to an unusable URL; not downloaded") from None
        if parts.scheme != "https" and (parts.scheme, parts.hostname) != (
            base.scheme,
            base.hostname,
        ):
            raise LookupFailed(
                f"{named_by} points to {mask_url(url)}, which is neither https nor on "
                f"{registry.shown}; not downloaded"
            )
        status, content, _ = self._send("GET", url, registry, None, MAX_ARCHIVE_BYTES, json_=False)
        if status != 200:
            raise LookupFailed(
                f"{registry.tool} at {registry.shown} answered HTTP {status} for "
                f"{mask_url(url)}; rerun without --deep to skip downloads"
            )
        return content
