"""The public names of portcullis.audit and what importing it costs."""

from __future__ import annotations

import subprocess
import sys

import portcullis.audit


def test_public_names_are_pinned() -> None:
    """portcullis.audit exports exactly these names; changing them is a deliberate API change."""
    assert sorted(portcullis.audit.__all__) == [
        "AuditLog",
        "DEFAULT_LOG_NAME",
        "DEFAULT_ROTATE_BYTES",
        "VerifyReport",
        "anchor_path",
        "default_log_path",
        "digest_args",
        "follow",
        "log_files",
        "parse_time",
        "query",
        "read_records",
        "rotated_files",
        "tail",
        "verify",
    ]
    for name in portcullis.audit.__all__:
        assert getattr(portcullis.audit, name).__doc__ or name.isupper()


def test_import_loads_no_heavy_modules() -> None:
    """Importing the audit package and its CLI loads neither pydantic, rich, yaml nor asyncio."""
    code = (
        "import sys, portcullis.audit, portcullis.cli.audit;"
        "print(sorted(m for m in ('pydantic','rich','yaml','asyncio','mcp','httpx') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
