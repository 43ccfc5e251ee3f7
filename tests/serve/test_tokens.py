"""Sealed session ids: round trip, binding to a principal, expiry, tampering, size."""

from __future__ import annotations

import base64
import time

import pytest

from portcullis.serve.tokens import MAX_TOKEN_BYTES, SessionState, TokenError, TokenSealer

KEY = b"k" * 32


def _state(**kw: object) -> SessionState:
    values: dict[str, object] = {
        "sid": "abc",
        "principal": "key:alice",
        "expires": time.time() + 60,
        "path": "/mcp",
        "init": b'{"jsonrpc":"2.0","id":1,"method":"initialize"}',
    }
    values.update(kw)
    return SessionState(**values)  # type: ignore[arg-type]


def test_round_trip() -> None:
    """A sealed state opens to the same state for its principal, and hides its content."""
    sealer = TokenSealer(KEY)
    state = _state()
    token = sealer.seal(state)
    assert token.startswith("pcs1.")
    assert "alice" not in token and "initialize" not in token
    assert sealer.open(token, "key:alice") == state
    assert sealer.seal(state) != token  # a fresh nonce each time


def test_other_principal_is_refused() -> None:
    """Another principal's session id is refused like a forged one."""
    sealer = TokenSealer(KEY)
    token = sealer.seal(_state())
    with pytest.raises(TokenError, match="unknown session id"):
        sealer.open(token, "key:bob")


def test_expired_is_refused() -> None:
    """A session id past its expiry is refused, saying so."""
    now = [1000.0]
    sealer = TokenSealer(KEY, clock=lambda: now[0])
    token = sealer.seal(_state(expires=1060.0))
    assert sealer.open(token, "key:alice").sid == "abc"
    now[0] = 1061.0
    with pytest.raises(TokenError, match="expired"):
        sealer.open(token, "key:alice")


def test_tampered_or_foreign_key_is_refused() -> None:
    """A flipped byte, a different key or a non-token all give TokenError."""
    sealer = TokenSealer(KEY)
    token = sealer.seal(_state())
    body = bytearray(base64.urlsafe_b64decode(token[5:] + "=" * (-len(token[5:]) % 4)))
    body[20] ^= 1
    tampered = "pcs1." + base64.urlsafe_b64encode(bytes(body)).decode().rstrip("=")
    for bad in (tampered, "pcs1.", "pcs1.!!!", "garbage", token[:-4]):
        with pytest.raises(TokenError):
            sealer.open(bad, "key:alice")
    with pytest.raises(TokenError):
        TokenSealer(b"z" * 32).open(token, "key:alice")


def test_oversize() -> None:
    """State too big for a header is refused when sealing, and huge ids are refused unread."""
    sealer = TokenSealer(KEY)
    with pytest.raises(TokenError, match="too large"):
        sealer.seal(_state(init=b"x" * MAX_TOKEN_BYTES))
    with pytest.raises(TokenError):
        sealer.open("pcs1." + "A" * MAX_TOKEN_BYTES, "key:alice")


def test_short_key_is_refused() -> None:
    """A session key under 32 bytes is a configuration mistake."""
    with pytest.raises(ValueError, match="32 bytes"):
        TokenSealer(b"short")
