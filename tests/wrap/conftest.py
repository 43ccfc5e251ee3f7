"""Fixture configurations of every format wrap edits, and a loader and options for plans."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import keyring
import keyring.backend
import pytest

from portcullis.scan.discover import load_file
from portcullis.scan.model import ConfigFile
from portcullis.wrap import WrapOptions

GATEWAY = "/opt/pc/bin/portcullis"

# name -> (path relative to the test's directory, text, the server every test wraps)
CONFIGS: dict[str, tuple[str, str, str]] = {
    "claude-desktop": (
        "Claude/claude_desktop_config.json",
        """{
  "mcpServers": {
    "fs": {
      "command": "npx",
      "args": [
        "-y",
        "@modelcontextprotocol/server-filesystem",
        "/srv/data"
      ],
      "env": {"X": "1"}
    },
    "web": {"url": "https://example.com/mcp"}
  },
  "globalShortcut": ""
}
""",
        "fs",
    ),
    "claude-code": (
        "cc/.claude.json",
        """{
  "numStartups": 12,
  "projects": {
    "/home/me/app": {
      "mcpServers": {
        "db": {"type": "stdio", "command": "uvx", "args": ["mcp-server-sqlite", "--db-path", "a.db"], "env": {}}
      },
      "allowedTools": []
    }
  },
  "mcpServers": {}
}
""",
        "db",
    ),
    "jsonc": (
        "proj/.cursor/mcp.json",
        """// Cursor, with comments and trailing commas
{
  "mcpServers": {
    /* the time server */
    "time": {
      "command": "uvx", // runner
      "args": ["mcp-server-time", "--local-timezone=UTC",], // tz
    },
  },
}
""",
        "time",
    ),
    "cursor-no-args": (
        "proj2/.cursor/mcp.json",
        '{\n  "mcpServers": {\n    "bare": {\n      "command": "mcp-bare"\n    }\n  }\n}\n',
        "bare",
    ),
    "vscode-servers": (
        "Code/User/mcp.json",
        """{
\t"servers": {
\t\t"time": {
\t\t\t"type": "stdio",
\t\t\t"command": "uvx",
\t\t\t"args": ["mcp-server-time"]
\t\t}
\t},
\t"inputs": []
}
""",
        "time",
    ),
    "vscode-workspace": (
        "ws/.vscode/mcp.json",
        '{"servers": {"time": {"type": "stdio", "command": "C:\\\\Tools\\\\time.exe", "args": []}}}\n',
        "time",
    ),
    "zed": (
        "zed/settings.json",
        """{
  // Zed settings
  "theme": "One Dark",
  "context_servers": {
    "fs": {"command": {"path": "npx", "args": ["-y", "pkg"], "env": {}}},
    "new": {"source": "custom", "command": "uvx", "args": ["mcp-server-time"]}
  }
}
""",
        "fs",
    ),
    "zed-flat": (
        "zed2/settings.json",
        """{
  "context_servers": {
    "new": {"source": "custom", "command": "uvx", "args": ["mcp-server-time"]}
  }
}
""",
        "new",
    ),
    "opencode": (
        "opencode/opencode.json",
        """{
  "$schema": "https://opencode.ai/config.json",
  "mcp": {
    "fs": {
      "type": "local",
      "command": ["npx", "-y", "pkg"],
      "environment": {"A": "b"},
      "enabled": true
    }
  }
}
""",
        "fs",
    ),
    "codex": (
        ".codex/config.toml",
        """model = "o3"  # keep this comment

[mcp_servers.time]
command = 'uvx'  # literal string
args = [
  "mcp-server-time",  # the package
]
env = { "TZ" = "UTC" }

[mcp_servers.bare]
command = "mcp-bare"
""",
        "time",
    ),
    "codex-inline": (
        "codex2/.codex/config.toml",
        """[mcp_servers.t]
command = "uvx"
args = ["mcp-server-time", '--local-timezone=UTC']  # inline
enabled = true
""",
        "t",
    ),
    "goose": (
        "goose/config.yaml",
        """GOOSE_PROVIDER: openai
extensions:
  fs:
    # the filesystem
    cmd: npx
    args:
      - -y
      - pkg   # pinned later
    envs: {}
    type: stdio
    enabled: true
    name: fs
""",
        "fs",
    ),
    "continue": (
        ".continue/mcpServers/time.yaml",
        """name: time
version: 0.0.1
schema: v1
mcpServers:
  - name: time  # the clock
    command: uvx
    args: ["mcp-server-time"]
""",
        "time",
    ),
}


def write_config(tmp: Path, key: str) -> Path:
    """Write fixture ``key`` under ``tmp``; return its path."""
    rel, text, _ = CONFIGS[key]
    path = tmp / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def load(path: Path) -> ConfigFile:
    """Discovery's reading of one file (client guessed from its path)."""
    return load_file(path)


def options(tmp: Path, *, keyring_ok: bool = False, policy_text: str | None = None) -> WrapOptions:
    """Plan options with a fixed gateway command and a policy file under ``tmp``."""
    return WrapOptions(
        gateway=[GATEWAY],
        policy_path=tmp / "policy.yaml",
        policy_text=policy_text,
        home=str(tmp / "home"),
        keyring=keyring_ok,
    )


class MemoryKeyring(keyring.backend.KeyringBackend):
    """An in-memory keyring: the fake at the OS-keychain boundary (none runs in CI)."""

    priority = 1

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.store: dict[tuple[str, str], str] = {}

    def set_password(self, service: str, username: str, password: str) -> None:
        """Store one secret."""
        self.store[(service, username)] = password

    def get_password(self, service: str, username: str) -> str | None:
        """Read one secret."""
        return self.store.get((service, username))

    def delete_password(self, service: str, username: str) -> None:
        """Forget one secret."""
        self.store.pop((service, username), None)


@pytest.fixture
def memory_keyring() -> Iterator[MemoryKeyring]:
    """A working keyring for the test, restored afterwards."""
    old = keyring.get_keyring()
    ring = MemoryKeyring()
    keyring.set_keyring(ring)
    try:
        yield ring
    finally:
        keyring.set_keyring(old)
