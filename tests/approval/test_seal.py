"""The sealed requestState of 2026-07-28 approvals: bound, single-use, expiring."""

from __future__ import annotations

from typing import Any

import pytest

from portcullis.approval.seal import Sealer, SealError

KEY = b"k" * 32
CALL = {
    "server": "files",
    "principal": "alice",
    "method": "tools/call",
    "subject": "write_file",
    "digest": "d1",
}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def seal(sealer: Sealer, **extra: Any) -> str:
    return sealer.seal(ttl_s=60, **CALL, **extra)


def test_round_trip_keeps_the_upstream_state_and_answers() -> None:
    """What was sealed comes back: the server's own state and earlier answers."""
    sealer = Sealer(KEY)
    state = seal(sealer, inner={"server": "state"}, carry={"q": {"action": "accept"}})
    body = sealer.open(state, **CALL)
    assert body.i == {"server": "state"}
    assert body.c == {"q": {"action": "accept"}}
    assert body.a is False


def test_a_state_opens_once() -> None:
    """The nonce is used up: a replay is refused."""
    sealer = Sealer(KEY)
    state = seal(sealer)
    sealer.open(state, **CALL)
    with pytest.raises(SealError, match="replayed"):
        sealer.open(state, **CALL)


@pytest.mark.parametrize(
    ("field", "value"),
    [("server", "db"), ("principal", "mallory"), ("method", "prompts/get"), ("subject", "rm")],
)
def test_a_state_is_bound_to_its_call(field: str, value: str) -> None:
    """Another server, principal, method or subject cannot use the state."""
    sealer = Sealer(KEY)
    state = seal(sealer)
    with pytest.raises(SealError, match="another call"):
        sealer.open(state, **{**CALL, field: value})


def test_changed_arguments_are_refused() -> None:
    """A different argument digest is a different call."""
    sealer = Sealer(KEY)
    with pytest.raises(SealError, match="arguments changed"):
        sealer.open(seal(sealer), **{**CALL, "digest": "d2"})


def test_expired_states_are_refused() -> None:
    """After the TTL the state is refused, even with a valid MAC."""
    clock = Clock()
    sealer = Sealer(KEY, clock=clock)
    state = seal(sealer)
    clock.now += 61
    with pytest.raises(SealError, match="expired"):
        sealer.open(state, **CALL)


@pytest.mark.parametrize(
    "forge",
    [
        lambda s: s[:-2] + ("AA" if not s.endswith("AA") else "BB"),  # the MAC
        lambda s: s.replace("pcl1.", "pcl1.e", 1),  # the payload
        lambda s: "pcl1.e30",  # no MAC at all
        lambda s: "something-else",
    ],
)
def test_forged_states_are_refused(forge: Any) -> None:
    """A changed payload or MAC, or a state the gateway never made, does not open."""
    sealer = Sealer(KEY)
    with pytest.raises(SealError):
        sealer.open(forge(seal(sealer)), **CALL)


def test_another_install_key_cannot_open_it() -> None:
    """A state sealed by another installation is refused."""
    state = seal(Sealer(b"x" * 32))
    with pytest.raises(SealError, match="altered"):
        Sealer(KEY).open(state, **CALL)


def test_is_ours_only_claims_the_prefix() -> None:
    """The prefix marks the gateway's states; a server's own state passes untouched."""
    assert Sealer.is_ours("pcl1.abc")
    assert not Sealer.is_ours("opaque-server-state")
    assert not Sealer.is_ours({"pcl1.": 1})


def test_another_gateway_process_cannot_open_it() -> None:
    """Same install key, another gateway instance: refused (its nonce memory is not ours)."""
    state = seal(Sealer(KEY))
    with pytest.raises(SealError, match="another gateway process"):
        Sealer(KEY).open(state, **CALL)
