"""The public names of the package."""

from __future__ import annotations

import subprocess
import sys

import portcullis


def test_public_names_are_pinned() -> None:
    """The package exports exactly these names; changing them is a deliberate API change."""
    assert sorted(portcullis.__all__) == [
        "Allow",
        "AuditError",
        "ConfigError",
        "Confirm",
        "Deny",
        "GatewayError",
        "PolicyError",
        "PortcullisError",
        "Verdict",
        "__version__",
    ]


def test_exception_tree() -> None:
    """Every error is a PortcullisError; a policy error is a configuration error."""
    assert issubclass(portcullis.PolicyError, portcullis.ConfigError)
    for exc in (portcullis.ConfigError, portcullis.AuditError, portcullis.GatewayError):
        assert issubclass(exc, portcullis.PortcullisError)


def test_run_path_imports_no_heavy_modules() -> None:
    """Importing the gateway's run path loads neither the mcp SDK, pydantic, yaml nor asyncio."""
    code = (
        "import sys, portcullis.cli.main, portcullis.gateway.transports.stdio, "
        "portcullis.gateway.session, portcullis.policy.compiled;"
        "print(sorted(m for m in ('mcp','pydantic','yaml','asyncio','rich','httpx') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
