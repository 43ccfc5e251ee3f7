"""The bubblewrap command line: what a server sees, and what is never exposed."""

from __future__ import annotations

from pathlib import Path

import pytest

from portcullis._exceptions import ConfigError
from portcullis.policy.compiled import SandboxSettings
from portcullis.sandbox.plan import PROXY_SOCKET, SANDBOX_HOME, build
from portcullis.sandbox.profiles import Runtime


def plan_for(tmp_path: Path, settings: SandboxSettings, **kw: object):  # type: ignore[no-untyped-def]
    runtime = Runtime(read_only=["/usr"], links=[("usr/bin", "/bin")], argv=["/usr/bin/true"])
    args: dict[str, object] = {
        "bwrap": "bwrap",
        "roots": [],
        "roots_read_only": False,
        "env": {},
        "passthrough": {},
        "protected": [],
        "cwd": None,
        "home": str(tmp_path / "home"),
    }
    args.update(kw)
    return build(settings, runtime, **args)  # type: ignore[arg-type]


def test_namespaces_and_a_filesystem_from_nothing(tmp_path: Path) -> None:
    """All namespaces, die-with-parent, new session, no capabilities, no host root."""
    plan = plan_for(tmp_path, SandboxSettings())
    argv = plan.argv
    for flag in ("--unshare-all", "--die-with-parent", "--new-session"):
        assert flag in argv
    assert argv[argv.index("--cap-drop") + 1] == "ALL"
    assert "--share-net" not in argv
    assert ["--ro-bind", "/", "/"] not in [argv[i : i + 3] for i in range(len(argv))]
    assert argv[plan.command_at :] == ["/usr/bin/true"]
    assert plan.env["HOME"] == SANDBOX_HOME


def test_roots_are_bound_read_only_when_asked(tmp_path: Path) -> None:
    """paths.read_only turns the roots' binds read-only."""
    root = tmp_path / "root"
    root.mkdir()
    rw = plan_for(tmp_path, SandboxSettings(), roots=[str(root)])
    ro = plan_for(tmp_path, SandboxSettings(), roots=[str(root)], roots_read_only=True)
    assert ["--bind", str(root), str(root)] == rw.argv[rw.argv.index(str(root)) - 1 :][:3]
    assert ["--ro-bind", str(root), str(root)] == ro.argv[ro.argv.index(str(root)) - 1 :][:3]


@pytest.mark.parametrize("what", ["/", "home", "parent-of-home"])
def test_binding_the_whole_filesystem_or_home_is_refused(tmp_path: Path, what: str) -> None:
    """/ and the home directory (or anything holding it) are never bound."""
    home = tmp_path / "home"
    home.mkdir()
    path = {"/": "/", "home": str(home), "parent-of-home": str(tmp_path)}[what]
    with pytest.raises(ConfigError):
        plan_for(tmp_path, SandboxSettings(read_only=(path,)))


def test_protected_files_inside_a_root_are_masked(tmp_path: Path) -> None:
    """A client config in a root, and the policy file, are covered by /dev/null."""
    root = tmp_path / "root"
    root.mkdir()
    (root / ".mcp.json").write_text("{}")
    (root / "policy.yaml").write_text("version: 1")
    plan = plan_for(
        tmp_path,
        SandboxSettings(),
        roots=[str(root)],
        protected=[".mcp.json", str(root / "policy.yaml")],
    )
    masked = {b.dest for b in plan.binds if b.kind == "mask-file"}
    assert masked == {str(root / ".mcp.json"), str(root / "policy.yaml")}
    assert ["--ro-bind", "/dev/null", str(root / ".mcp.json")] == plan.argv[
        plan.argv.index("/dev/null") - 1 :
    ][:3]


def test_environment_is_only_what_is_named(tmp_path: Path) -> None:
    """The passed variables and the policy env reach the server; agent and bus sockets never."""
    plan = plan_for(
        tmp_path,
        SandboxSettings(env=("LANG", "SSH_AUTH_SOCK")),
        passthrough={"LANG": "C.UTF-8", "SSH_AUTH_SOCK": "/run/agent"},
        env={"API_KEY": "from-policy", "DBUS_SESSION_BUS_ADDRESS": "unix:path=/run/bus"},
    )
    assert plan.env["LANG"] == "C.UTF-8"
    assert plan.env["API_KEY"] == "from-policy"
    for name in ("SSH_AUTH_SOCK", "DBUS_SESSION_BUS_ADDRESS"):
        assert name not in plan.env


def test_runtime_in_the_home_directory_is_refused(tmp_path: Path) -> None:
    """A runtime bind that is (or holds) the home directory is refused like a policy bind."""
    home = tmp_path / "home"
    home.mkdir()
    runtime = Runtime(read_only=["/usr", str(home)], links=[], argv=["/usr/bin/true"])
    with pytest.raises(ConfigError, match="home directory"):
        build(
            SandboxSettings(),
            runtime,
            bwrap="bwrap",
            roots=[],
            roots_read_only=False,
            env={},
            passthrough={},
            protected=[],
            cwd=None,
            home=str(home),
        )


def test_runtime_binds_go_on_top_of_writable_roots(tmp_path: Path) -> None:
    """A venv inside a writable root stays read-only: its bind comes after the root's."""
    root = tmp_path / "root"
    (root / ".venv").mkdir(parents=True)
    runtime = Runtime(read_only=[str(root / ".venv")], links=[], argv=["/usr/bin/true"])
    plan = build(
        SandboxSettings(),
        runtime,
        bwrap="bwrap",
        roots=[str(root)],
        roots_read_only=False,
        env={},
        passthrough={},
        protected=[],
        cwd=None,
        home=str(tmp_path / "home"),
    )
    order = [(b.kind, b.dest) for b in plan.binds if b.kind in ("ro", "rw")]
    assert order.index(("rw", str(root))) < order.index(("ro", str(root / ".venv")))


def test_bind_inside_a_protected_path_is_refused(tmp_path: Path) -> None:
    """Binding part of the state directory (or the policy) is refused, not just masked."""
    state = tmp_path / "state"
    (state / "approvals").mkdir(parents=True)
    with pytest.raises(ConfigError, match="inside the protected path"):
        plan_for(
            tmp_path,
            SandboxSettings(read_write=(str(state / "approvals"),)),
            protected=[str(state)],
        )


def test_network_modes(tmp_path: Path) -> None:
    """Host shares the network; allow_hosts binds the proxy socket and sets the proxy vars."""
    host = plan_for(tmp_path, SandboxSettings(network="host"))
    assert "--share-net" in host.argv
    sock = tmp_path / "egress.sock"
    sock.write_text("")
    allow = plan_for(tmp_path, SandboxSettings(network="allow_hosts"), proxy_socket=str(sock))
    assert "--share-net" not in allow.argv
    assert PROXY_SOCKET in allow.argv
    assert allow.env["HTTPS_PROXY"] == allow.env["http_proxy"] == "http://127.0.0.1:3128"


def test_working_directory_only_when_visible(tmp_path: Path) -> None:
    """The server's cwd is used when a bind shows it; otherwise the sandbox home."""
    root = tmp_path / "root"
    root.mkdir()
    inside = plan_for(tmp_path, SandboxSettings(), roots=[str(root)], cwd=str(root))
    outside = plan_for(tmp_path, SandboxSettings(), cwd=str(tmp_path))
    assert inside.cwd == str(root)
    assert outside.cwd == SANDBOX_HOME


def test_host_network_gets_the_resolver_files(tmp_path: Path) -> None:
    """With the host's network, name resolution works: resolv.conf and hosts are bound."""
    host = plan_for(tmp_path, SandboxSettings(network="host"))
    none = plan_for(tmp_path, SandboxSettings())
    assert "/etc/hosts" in host.argv
    assert "/etc/hosts" not in none.argv
