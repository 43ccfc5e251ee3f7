"""A keyring backend kept in a JSON file, for tests that cross process boundaries.

Selected with ``PYTHON_KEYRING_BACKEND=tests.wrap.filekeyring.FileKeyring`` and
``PORTCULLIS_TEST_KEYRING=<file>``: a fake at the OS-keychain boundary (no OS keychain runs in
CI), used by the end-to-end wrap test so ``portcullis wrap`` and ``portcullis run`` (separate
processes) share one keyring.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import keyring.backend


class FileKeyring(keyring.backend.KeyringBackend):
    """Secrets in a JSON file named by ``$PORTCULLIS_TEST_KEYRING``."""

    priority = 1

    def _path(self) -> Path:
        return Path(os.environ["PORTCULLIS_TEST_KEYRING"])

    def _load(self) -> dict[str, str]:
        try:
            data: dict[str, str] = json.loads(self._path().read_text())
        except FileNotFoundError:
            return {}
        return data

    def set_password(self, service: str, username: str, password: str) -> None:
        """Store one secret."""
        data = self._load()
        data[f"{service}\x1f{username}"] = password
        self._path().write_text(json.dumps(data))

    def get_password(self, service: str, username: str) -> str | None:
        """Read one secret."""
        return self._load().get(f"{service}\x1f{username}")

    def delete_password(self, service: str, username: str) -> None:
        """Forget one secret."""
        data = self._load()
        data.pop(f"{service}\x1f{username}", None)
        self._path().write_text(json.dumps(data))
