"""Container launches that open the host: privileged, sockets, host mounts and namespaces."""

from __future__ import annotations

import pytest

from portcullis.scan.checks import docker

from ._helpers import srv

IMG = "mcp/fs@sha256:" + "b" * 64


def _run(*opts: str) -> list[tuple[str, str]]:
    out = docker.check(srv("d", "docker", ["run", "-i", "--rm", *opts, IMG, "/projects"]))
    return [(f.rule, f.severity) for f in out]


@pytest.mark.parametrize(
    ("opts", "expected"),
    [
        (["--privileged"], [("docker-privileged", "critical")]),
        (["--security-opt", "seccomp=unconfined"], [("docker-privileged", "high")]),
        (["-v", "/var/run/docker.sock:/var/run/docker.sock"], [("docker-host-mount", "critical")]),
        (["--volume=/run/podman/podman.sock:/sock"], [("docker-host-mount", "critical")]),
        (["-v", "/:/host"], [("docker-host-mount", "critical")]),
        (["-v", "/:/host:ro"], [("docker-host-mount", "critical")]),
        (["-v", "$HOME:/root"], [("docker-host-mount", "high")]),
        (["-v", "~:/data"], [("docker-host-mount", "high")]),
        (["-v", "C:\\Users\\me:/data"], [("docker-host-mount", "high")]),
        (["-v", "~/.ssh:/root/.ssh:ro"], [("docker-host-mount", "critical")]),
        (["--mount", "type=bind,source=/,target=/host"], [("docker-host-mount", "critical")]),
        (["--network", "host"], [("docker-host-network", "medium")]),
        (["--net=host"], [("docker-host-network", "medium")]),
        (["--pid", "host"], [("docker-host-namespace", "high")]),
        (["--pid=host"], [("docker-host-namespace", "high")]),
        (["--cap-add", "NET_ADMIN"], [("docker-cap-add", "medium")]),
        (["--cap-add=ALL"], [("docker-cap-add", "high")]),
        (["--cap-add", "SYS_ADMIN"], [("docker-cap-add", "high")]),
    ],
)
def test_dangerous_options(opts: list[str], expected: list[tuple[str, str]]) -> None:
    """Each host-opening option is reported with its calibrated severity."""
    assert _run(*opts) == expected


@pytest.mark.parametrize(
    "opts",
    [
        [],
        ["-v", "/home/me/src/app:/projects/app:ro"],
        ["--mount", "type=volume,source=data,target=/data"],
        ["-v", "mcpdata:/data"],
        ["--network", "bridge"],
        ["--cap-drop", "ALL"],
        ["-e", "PORT=8080"],
    ],
)
def test_confined_options_are_clean(opts: list[str]) -> None:
    """Project mounts, named volumes, bridge networking and dropped capabilities are fine."""
    assert _run(*opts) == []


def test_line_of_the_option_value() -> None:
    """The finding points at the mount value's argument."""
    s = srv("d", "docker", ["run", "-i", "-v", "/:/host", IMG])
    out = list(docker.check(s))
    assert out[0].pointer == "/mcpServers/d/args/3"
    assert out[0].line == 16
    assert "-v /:/host" in out[0].fix


def test_podman_and_container_run() -> None:
    """`podman` run and docker container run are parsed too."""
    assert [f.rule for f in docker.check(srv("d", "podman", ["run", "--privileged", IMG]))] == [
        "docker-privileged"
    ]
    s = srv("d", "docker", ["container", "run", "--privileged", IMG])
    assert [f.rule for f in docker.check(s)] == ["docker-privileged"]


def test_options_after_the_image_belong_to_the_server() -> None:
    """Flags after the image are the container command's, not docker's."""
    assert list(docker.check(srv("d", "docker", ["run", "-i", IMG, "--privileged"]))) == []


def test_combined_short_flags() -> None:
    """-itv/:/host parses the attached volume value."""
    assert [f.rule for f in docker.check(srv("d", "docker", ["run", "-itv/:/host", IMG]))] == [
        "docker-host-mount"
    ]


def test_non_docker_command_is_ignored() -> None:
    """Other commands get no docker findings."""
    assert list(docker.check(srv("x", "npx", ["-y", "x@1.0.0", "--privileged"]))) == []
