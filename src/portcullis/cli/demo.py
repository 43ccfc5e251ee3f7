"""``portcullis demo``: the built-in end-to-end demonstration."""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["register"]


def register(sub: Any) -> None:
    """Add the ``demo`` command."""
    p = sub.add_parser(
        "demo",
        help="run the gateway in front of a real MCP server and show what it does",
        description="Start the reference filesystem MCP server behind portcullis, list its "
        "tools, make an allowed and a refused call, and show the audit trail. "
        "Everything happens in a temporary directory.",
    )
    p.set_defaults(handler=_demo)


def _demo(args: argparse.Namespace) -> int:
    from portcullis.demo import run_demo

    return run_demo()
