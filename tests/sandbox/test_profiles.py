"""Runtime discovery: venvs, node_modules trees, and npx packages from npx's cache."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from portcullis._exceptions import ConfigError
from portcullis.sandbox.profiles import outermost, python_dirs, runtime


def test_python_profile_binds_the_venv_and_its_interpreter() -> None:
    """The venv this test runs in, and the installation behind it, are found."""
    found = python_dirs(sys.executable)
    assert sys.prefix in found
    assert any(Path(sys.base_prefix).resolve().is_relative_to(p) for p in map(Path, found))


def test_outermost_drops_nested_paths() -> None:
    """A bind covers its subtree: nested paths are not bound twice."""
    assert outermost(["/usr", "/usr/lib", "/opt/a", "/opt/ab"]) == ["/opt/a", "/opt/ab", "/usr"]


def test_unpinned_npx_is_refused() -> None:
    """Npx without @VERSION cannot say which package to run."""
    with pytest.raises(ConfigError, match="not pinned"):
        runtime("node", ["npx", "-y", "@scope/server"], {"PATH": "/usr/bin:/bin"})


def test_npx_package_missing_from_the_cache_says_how_to_install(tmp_path: Path) -> None:
    """A pinned package npx never installed: the error gives the command that does."""
    env = {"PATH": "/usr/bin:/bin", "npm_config_cache": str(tmp_path)}
    with pytest.raises(ConfigError, match=r"npx -y @scope/server@1\.2\.3 --help"):
        runtime("node", ["npx", "-y", "@scope/server@1.2.3"], env)


def test_npx_package_in_the_cache_runs_from_there(tmp_path: Path) -> None:
    """Npx's _npx layout: the package's bin runs with node, its directory read-only."""
    entry = tmp_path / "_npx" / "0123456789abcdef"
    package = entry / "node_modules" / "@scope" / "server"
    package.mkdir(parents=True)
    (package / "package.json").write_text(json.dumps({"bin": {"server": "dist/index.js"}}))
    (entry / "package.json").write_text(json.dumps({"_npx": {"packages": ["@scope/server@1.2.3"]}}))
    env = {"PATH": "/usr/bin:/bin", "npm_config_cache": str(tmp_path)}
    found = runtime("node", ["npx", "-y", "@scope/server@1.2.3", "/srv"], env)
    assert found.argv[1:] == [str(package / "dist/index.js"), "/srv"]
    assert found.argv[0].endswith("/node")
    assert str(entry) in found.read_only


def test_missing_command_is_a_config_error() -> None:
    """A command that is not on the PATH cannot be sandboxed."""
    with pytest.raises(ConfigError, match="cannot find"):
        runtime("binary", ["no-such-command-here"], {"PATH": "/nonexistent"})


def test_unpinned_uvx_is_refused() -> None:
    """A uvx tool without a version cannot say which environment to run."""
    with pytest.raises(ConfigError, match="not pinned"):
        runtime("python", ["uvx", "mcp-server-time"], {"PATH": str(Path(sys.executable).parent)})


def test_uvx_tool_missing_from_the_cache_says_how_to_install(tmp_path: Path) -> None:
    """A pinned tool uv never built: the error gives the command that does."""
    env = {"PATH": str(Path(sys.executable).parent), "UV_CACHE_DIR": str(tmp_path)}
    with pytest.raises(ConfigError, match=r"uvx mcp-server-time@1\.0 --help"):
        runtime("python", ["uvx", "mcp-server-time@1.0"], env)
