"""Review regressions for observe mode: protected paths stay refused whatever else is denied."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from portcullis.gateway.guards.arguments import ArgumentGuard
from portcullis.gateway.session import Session
from portcullis.policy.compiled import Rules, ServerPolicy
from tests.gateway.conftest import Recorder, decode, make_session, msg
from tests.gateway.test_observe import RULES, call, last_call


def guarded(recorder: Recorder, root: Path, protected: Path) -> Session:
    """An observing session with roots ``root`` and ``protected`` as a protected directory."""
    rules = {"tools": RULES, "prompts": Rules(default="deny")}
    server = ServerPolicy(name="demo", mode="observe", roots=(str(root),), **rules)
    guard = ArgumentGuard(server, protected=[str(protected)], cwd=str(root))
    s = make_session(recorder, mode="observe", roots=server.roots, arguments=guard, **rules)
    s.from_client(msg(id="l", method="tools/list"))
    s.from_server(msg(id="l", result={"tools": [{"name": "read_file"}]}))
    return s


def refused(s: Session, rid: int, args: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    [(dest, data)] = s.from_client(call(rid, "read_file", args))
    return dest, decode(data)


@pytest.mark.parametrize(
    "value",
    [
        "{prot}\n",  # outside the roots as written; the protected directory once trimmed
        "{prot}/" + "./" * 3000 + "key",  # too long to judge, the protected file once normalized
        "{prot}/key\x07",  # a control character stops the guard before the protected check
    ],
)
def test_protected_path_behind_another_path_denial_is_refused(
    recorder: Recorder, tmp_path: Path, value: str
) -> None:
    """A value the path guard denies for another reason is refused when it may be protected."""
    root, prot = tmp_path / "work", tmp_path / "secret"
    root.mkdir()
    prot.mkdir()
    s = guarded(recorder, root, prot)
    dest, reply = refused(s, 1, {"path": value.format(prot=prot)})
    assert dest == "client"
    assert reply["result"]["isError"] is True
    record = last_call(recorder)
    assert record["rule"] == "paths.protected"
    assert "enforced" not in record


def test_path_outside_roots_not_protected_is_still_forwarded(
    recorder: Recorder, tmp_path: Path
) -> None:
    """The protected re-check does not enforce an ordinary outside-roots denial."""
    root, prot = tmp_path / "work", tmp_path / "secret"
    root.mkdir()
    prot.mkdir()
    s = guarded(recorder, root, prot)
    [(dest, _)] = s.from_client(call(1, "read_file", {"path": str(tmp_path / "other.txt")}))
    assert dest == "server"
    assert last_call(recorder)["enforced"] is False


def test_too_deep_arguments_are_refused_in_observe_mode(recorder: Recorder, tmp_path: Path) -> None:
    """Arguments nested deeper than the guards look are refused: they may hide a protected path."""
    root, prot = tmp_path / "work", tmp_path / "secret"
    root.mkdir()
    prot.mkdir()
    s = guarded(recorder, root, prot)
    nested: Any = str(prot / "key")
    for _ in range(40):
        nested = [nested]
    dest, _ = refused(s, 1, {"path": nested})
    assert dest == "client"
    assert last_call(recorder)["rule"] == "arguments.too-deep"


def test_malformed_resource_uri_is_refused_in_observe_mode(
    recorder: Recorder, tmp_path: Path
) -> None:
    """A resource URI with a trailing space is refused: trimmed, it may name a protected file."""
    root, prot = tmp_path / "work", tmp_path / "secret"
    root.mkdir()
    prot.mkdir()
    s = guarded(recorder, root, prot)
    uri = (prot / "key").as_uri() + " "
    [(dest, _)] = s.from_client(msg(id=1, method="resources/read", params={"uri": uri}))
    assert dest == "client"
    assert last_call(recorder)["rule"] == "arguments.malformed-uri"


def test_completion_of_protected_path_is_refused_behind_a_rule_denial(
    recorder: Recorder, tmp_path: Path
) -> None:
    """A completion the prompt rules would deny still may not complete a protected path."""
    root, prot = tmp_path / "work", tmp_path / "secret"
    root.mkdir()
    prot.mkdir()
    s = guarded(recorder, root, prot)
    params = {
        "ref": {"type": "ref/prompt", "name": "anything"},
        "argument": {"name": "path", "value": str(prot) + "/"},
    }
    [(dest, _)] = s.from_client(msg(id=1, method="completion/complete", params=params))
    assert dest == "client"
    record = [r for r in recorder.records if r.get("method") == "completion/complete"][-1]
    assert record["rule"] == "paths.protected"


def test_confirm_tool_with_a_would_be_path_denial_still_asks(
    recorder: Recorder, tmp_path: Path
) -> None:
    """Approvals kept: a confirm tool's call is not forwarded unasked because a guard would deny."""
    from portcullis.approval.broker import Broker
    from portcullis.approval.request import Outcome
    from tests.gateway.test_approving import Desk, Relay
    from tests.gateway.test_observe import observing

    desk = Desk("console")
    broker = Broker({"console": desk}, 60, order=("console",))
    s = observing(recorder, tmp_path, broker=broker)
    relay = Relay(s)
    assert s.from_client(call(5, "write_file", {"path": "/etc/cron.d/x", "content": "*"})) == []
    assert desk.asked and desk.done is not None
    desk.done(Outcome("approved", "console", "alice"))
    [(dest, _)] = relay.wait()
    assert dest == "server"
    record = last_call(recorder)
    assert record["rule"] == "paths.outside-roots"
    assert record["approval"]["outcome"] == "approved"


def test_observed_record_is_bounded_for_huge_argument_lists(
    recorder: Recorder, tmp_path: Path
) -> None:
    """A call with thousands of path values records at most MAX_OBSERVED_ITEMS and the rest counted."""
    from portcullis.gateway.guards.arguments import MAX_OBSERVED_ITEMS
    from tests.gateway.test_observe import observing

    s = observing(recorder, tmp_path)
    paths = [f"f{i}" for i in range(5000)]
    s.from_client(call(1, "read_multiple", {"paths": paths}))
    observed = last_call(recorder)["observed"]
    assert len(observed["inputs"]) == MAX_OBSERVED_ITEMS
    assert len(observed["paths"]) == MAX_OBSERVED_ITEMS
    assert observed["omitted"] == {
        "inputs": 5000 - MAX_OBSERVED_ITEMS,
        "paths": 5000 - MAX_OBSERVED_ITEMS,
    }


def test_secret_in_an_argument_name_is_redacted_in_the_pointer(
    recorder: Recorder, tmp_path: Path
) -> None:
    """A secret smuggled in as a member name does not reach the record through its JSON pointer."""
    from tests.gateway.test_observe import SECRET, observing

    s = observing(recorder, tmp_path)
    s.from_client(call(1, "read_multiple", {"paths": [{SECRET + "-" + "x" * 5000: "a.txt"}]}))
    observed = last_call(recorder)["observed"]
    assert SECRET not in str(observed)
    [pointer] = observed["inputs"]
    assert len(pointer) < 4200


def test_check_reports_a_protected_path_behind_a_rule_denial_as_enforced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`portcullis check` in observe mode agrees with the gateway: the protected path is refused."""
    import json
    import subprocess
    import sys

    monkeypatch.setenv("PORTCULLIS_HOME", str(tmp_path / "home"))
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "version: 1\nservers:\n  watch:\n    mode: observe\n    tools: {default: deny}\n"
    )
    done = subprocess.run(
        [
            *(sys.executable, "-m", "portcullis", "check", "--policy", str(policy)),
            *(
                "--server",
                "watch",
                "--tool",
                "anything",
                "--args",
                json.dumps({"path": str(policy)}),
            ),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    out = json.loads(done.stdout)
    assert (out["decision"], out["rule"], out["enforced"]) == ("deny", "paths.protected", True)
