"""Fixtures for the pin tests: a private state directory and sample definitions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from portcullis.pins import LaunchId, PinStore, launch_id


@pytest.fixture
def store(home: Path) -> PinStore:
    return PinStore()


@pytest.fixture
def launch() -> LaunchId:
    return launch_id("files", "npx", ["-y", "@scope/server@1.2.3", "/srv"], env={"TOKEN": "s3cr3t"})


def tool(name: str, description: str = "Read a file.", **extra: Any) -> dict[str, Any]:
    """A tools/list entry."""
    return {
        "name": name,
        "description": description,
        "inputSchema": {"type": "object", "properties": {"path": {"type": "string"}}},
        **extra,
    }
