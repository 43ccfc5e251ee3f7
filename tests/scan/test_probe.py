"""What a sandboxed inspection binds for a server started as `node script.js` or `python x.py`."""

from __future__ import annotations

from pathlib import Path

from portcullis.scan.model import Server
from portcullis.scan.probe import read_only_paths

SERVERS = Path(__file__).parents[1] / "servers"


def entry(command: str, *args: str) -> Server:
    """A stdio entry as discovery builds it."""
    return Server(
        name="s",
        client="claude-desktop",
        scope="user",
        file=Path("/tmp/pc-none/claude_desktop_config.json"),
        pointer="/mcpServers/s",
        line=3,
        transport="stdio",
        command=command,
        args=list(args),
    )


def test_a_node_script_brings_the_node_modules_it_resolves_from():
    """`node …/node_modules/pkg/dist/index.js` binds the folder whose node_modules holds its deps."""
    script = (
        SERVERS
        / "node_modules"
        / "@modelcontextprotocol"
        / "server-filesystem"
        / "dist"
        / "index.js"
    )
    paths = read_only_paths(entry("node", str(script), "/tmp"), protected=[])
    assert str(SERVERS.resolve()) in paths
    assert str(script.resolve()) in paths


def test_a_python_script_brings_its_own_folder(tmp_path):
    """`python server.py` can import the modules beside it."""
    (tmp_path / "pkg").mkdir()
    script = tmp_path / "pkg" / "server.py"
    script.write_text("import helper\n")
    paths = read_only_paths(entry("python3", str(script)), protected=[])
    assert str((tmp_path / "pkg").resolve()) in paths


def test_a_script_root_under_a_protected_path_is_not_bound(tmp_path):
    """The script's folder is left out when it lies inside a protected path."""
    script = tmp_path / "server.py"
    script.write_text("")
    paths = read_only_paths(entry("python3", str(script)), protected=[str(tmp_path)])
    assert paths == []
