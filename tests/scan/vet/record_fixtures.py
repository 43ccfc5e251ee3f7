"""Re-record the registry answers the offline tests replay (run by hand, not by pytest).

    .venv/bin/python -m tests.scan.vet.record_fixtures

Looks the packages up on the registries the local npm and pip configuration names (the
same discovery the scanner uses), then replaces every registry host in the answers with the
placeholder ``{registry}`` so no real host is written into the repository. Long READMEs are
cut to keep the files small.
"""

from __future__ import annotations

import json
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote, urljoin, urlsplit

import httpx2

from portcullis.scan.vet.registries import npm_registry, pypi_registry

DATA = Path(__file__).parent / "data"
NPM = [("@modelcontextprotocol/server-filesystem", "2026.8.31")]
PYPI = [("pycrypto", None), ("mcp-server-time", "2026.10.19")]


def _sanitize(text: str, hosts: set[str]) -> str:
    for host in sorted(hosts, key=len, reverse=True):
        text = text.replace(f"https://{host}/", "{registry}").replace(host, "registry.invalid")
    return text


def main() -> None:
    """Fetch, sanitise and write every fixture."""
    now = datetime.now(UTC)
    cache = Path(tempfile.mkdtemp())
    client = httpx2.Client(timeout=10)
    npm = npm_registry(NPM[0][0], env=os.environ, home=Path.home(), cache_dir=cache, now=now)
    pypi = pypi_registry(env=os.environ, home=Path.home())
    hosts = {str(urlsplit(r.url).hostname) for r in (npm, pypi)}
    for name, version in NPM:
        doc = client.get(npm.url + quote(name, safe="@")).json()
        # archives may live on a host of their own: hide those too
        hosts |= {str(urlsplit(v["dist"]["tarball"]).hostname) for v in doc["versions"].values()}
        slug = name.replace("@", "").replace("/", "__")
        text = _sanitize(json.dumps(doc, indent=1, sort_keys=True), hosts)
        (DATA / f"npm-{slug}.json").write_text(text + "\n")
        tarball = doc["versions"][version]["dist"]["tarball"]
        (DATA / f"npm-{slug}-{version}.tgz").write_bytes(client.get(tarball).content)
    for name, wanted in PYPI:
        url = f"{pypi.url}pypi/{name}/json"
        doc = client.get(url).json()
        doc["info"]["description"] = doc["info"]["description"][:300]
        doc["info"]["docs_url"] = None  # the index's own docs host
        files = [f for fs in doc["releases"].values() for f in fs]
        hosts |= {str(urlsplit(urljoin(url, f["url"])).hostname) for f in files}
        hosts |= {
            str(urlsplit(str(doc["info"].get(k) or "")).hostname)
            for k in ("package_url", "project_url", "release_url")
        } - {"None"}
        text = _sanitize(json.dumps(doc, indent=1, sort_keys=True), hosts)
        (DATA / f"pypi-{name}.json").write_text(text + "\n")
        if wanted:
            wheel = next(f for f in doc["urls"] if f["packagetype"] == "bdist_wheel")
            content = client.get(urljoin(url, wheel["url"])).content
            (DATA / wheel["filename"]).write_bytes(content)


if __name__ == "__main__":
    main()
