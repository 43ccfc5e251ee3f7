"""Session ids that carry their own state: sealed (AES-GCM), bound to a principal, expiring.

A legacy Streamable HTTP session is named by ``Mcp-Session-Id``. Portcullis makes that id an
encrypted, authenticated token holding what another replica needs to continue the session: the
principal it belongs to, its expiry, the rights it began with, and the client's ``initialize``
request (replayed to start the upstream servers afresh). So sessions continue on any replica
without sticky load balancing; the key is shared by the replicas (``serve.sessions.key``, or
kept in Redis). The client can read nothing of it, and it is never
sent upstream.
"""

from __future__ import annotations

import base64
import os
import secrets
import time
from collections.abc import Callable
from typing import Final

import msgspec

__all__ = ["SessionState", "TokenError", "TokenSealer"]

_PREFIX: Final = "pcs1."
_AAD: Final = b"portcullis session v1"
# An Mcp-Session-Id travels in a header on every request: keep it well under common limits.
MAX_TOKEN_BYTES: Final = 6000


class TokenError(ValueError):
    """A session id that is not ours, was altered, expired or belongs to someone else."""


class SessionState(msgspec.Struct, frozen=True, omit_defaults=True):
    """What a session id holds."""

    sid: str  # random; names the session in logs, the audit trail and revocations
    principal: str  # "<kind>:<name>" of the principal it was issued to
    expires: float
    path: str  # the endpoint it was opened on (/mcp or /servers/NAME/mcp)
    init: bytes = b""  # the client's initialize request
    access: str = ""  # digest of the rights its links were built for (App._open compares)


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(SessionState)


class TokenSealer:
    """Seals and opens session ids with one key shared by every replica."""

    def __init__(self, key: bytes, *, clock: Callable[[], float] = time.time) -> None:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        if len(key) < 32:
            raise ValueError("the session key must be at least 32 bytes")
        self._aead = AESGCM(key[:32])
        self._clock = clock

    @staticmethod
    def new_sid() -> str:
        """A fresh random session name."""
        return secrets.token_hex(16)

    def seal(self, state: SessionState) -> str:
        """The session id for ``state``."""
        nonce = os.urandom(12)
        body = self._aead.encrypt(nonce, _encoder.encode(state), _AAD)
        token = _PREFIX + base64.urlsafe_b64encode(nonce + body).decode("ascii").rstrip("=")
        if len(token) > MAX_TOKEN_BYTES:
            raise TokenError("the session state is too large to seal into a session id")
        return token

    def open(self, token: str, principal: str) -> SessionState:
        """The state sealed in ``token``; raise TokenError unless valid for ``principal``."""
        if not token.startswith(_PREFIX) or len(token) > MAX_TOKEN_BYTES:
            raise TokenError("unknown session id")
        from cryptography.exceptions import InvalidTag

        try:
            text = token[len(_PREFIX) :]
            data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
            state = _decoder.decode(self._aead.decrypt(data[:12], data[12:], _AAD))
        except (ValueError, InvalidTag, msgspec.DecodeError):
            raise TokenError("unknown session id") from None
        if state.principal != principal:
            # Someone else's session id: the same answer as for a forged one.
            raise TokenError("unknown session id")
        if state.expires < self._clock():
            raise TokenError("the session expired; initialize a new one")
        return state
