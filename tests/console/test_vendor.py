"""The vendored front-end files are the ones vendor.json pins, byte for byte."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import portcullis.console

VENDOR = Path(portcullis.console.__file__).parent / "static" / "vendor"


def test_digests_match() -> None:
    """Every file listed in vendor.json has the sha256 recorded there."""
    listed = json.loads((VENDOR / "vendor.json").read_text())["files"]
    assert set(listed) == {"htmx-2.0.11.min.js", "htmx-ext-sse-2.2.4.min.js"}
    for name, info in listed.items():
        assert hashlib.sha256((VENDOR / name).read_bytes()).hexdigest() == info["sha256"], name


def test_pages_load_only_vendored_and_own_scripts() -> None:
    """The templates reference the vendored files by their pinned names, from /static."""
    base = (VENDOR.parent.parent / "templates" / "base.html").read_text()
    scripts = [s.split('"', 1)[0] for s in base.split('<script src="')[1:]]
    assert scripts == [
        "/static/vendor/htmx-2.0.11.min.js",
        "/static/vendor/htmx-ext-sse-2.2.4.min.js",
        "/static/console.js",
    ]
