"""Sealed ``requestState`` for 2026-07-28 approvals (multi round-trip requests).

In the 2026-07-28 era the gateway asks the client's user with an ``input_required`` result and
the client retries the call, echoing ``requestState``. The client is not trusted with that
state: it is sealed with an HMAC over the server, the principal, the method, the subject, the
argument digest, an expiry and a nonce, under a key derived from the install key. A retry is
accepted once (nonces are remembered until they expire), for the same call only.

The seal also carries the upstream server's own ``requestState`` (``inner``) and the answers the
client gave to the server's earlier questions (``carry``), so the server's own rounds keep
working underneath the gateway's.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import time
from collections.abc import Callable
from typing import Any, Final, Protocol

import msgspec

from portcullis._exceptions import PortcullisError

__all__ = ["PREFIX", "NonceStore", "SealError", "Sealed", "Sealer"]

PREFIX: Final = "pcl1."
_CONTEXT: Final = b"portcullis approval requestState v1"
_MAX_NONCES: Final = 65536  # bounded memory; beyond it the oldest expire first


class SealError(PortcullisError):
    """A requestState refused: not the gateway's, altered, expired, reused, or for another call."""


class Sealed(msgspec.Struct, frozen=True, omit_defaults=True):
    """What a seal holds."""

    s: str  # server
    p: str  # principal
    m: str  # method
    t: str  # subject (tool, prompt or URI)
    d: str  # argument binding digest
    x: float  # expiry, unix time
    n: str  # nonce
    g: str = ""  # the gateway instance that issued it (nonces are remembered per instance)
    a: bool = False  # already approved (the server's own round is under way)
    f: bool = False  # approved for the rest of the session
    h: str | None = None  # the channel that approved, when a: true
    v: str | None = None  # who approved, when a: true
    i: Any = None  # the upstream server's requestState
    c: dict[str, Any] | None = None  # the client's answers to the upstream's earlier requests


_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(Sealed).decode


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class NonceStore(Protocol):
    """Where replicas record the nonces they accepted."""

    def use(self, nonce: str, expiry: float) -> bool:
        """True the first time ``nonce`` is seen; False on a replay or when unsure."""


class Sealer:
    """Seals and opens the gateway's requestState; remembers the nonces it accepted."""

    def __init__(
        self,
        install_key: bytes,
        *,
        clock: Callable[[], float] = time.time,
        instance: str | None = None,
        nonces: NonceStore | None = None,
    ) -> None:
        """``instance`` and ``nonces``: set by ``serve`` replicas that share a key and a store.

        By default used nonces live in this process only: a state is valid only in the gateway
        that issued it, so another (or a restarted) gateway cannot be handed it again. Replicas
        of one ``serve`` deployment share the key, an instance name and the store of used
        nonces, so a state issued by one is accepted once by any of them.
        """
        self._key = hmac.new(install_key, _CONTEXT, hashlib.sha256).digest()
        self._clock = clock
        self._instance = instance or os.urandom(8).hex()
        self._nonces = nonces
        self._used: dict[str, float] = {}  # nonce -> expiry

    @staticmethod
    def is_ours(state: object) -> bool:
        """Whether ``state`` claims to be a gateway seal (it may still be forged)."""
        return isinstance(state, str) and state.startswith(PREFIX)

    def seal(
        self,
        *,
        server: str,
        principal: str,
        method: str,
        subject: str,
        digest: str,
        ttl_s: float,
        approved: bool = False,
        for_session: bool = False,
        channel: str | None = None,
        approver: str | None = None,
        inner: Any = None,
        carry: dict[str, Any] | None = None,
    ) -> str:
        """A fresh sealed state for one call."""
        import secrets  # (approvals are rare: kept off the gateway's start-up)

        body = Sealed(
            s=server,
            p=principal,
            m=method,
            t=subject,
            d=digest,
            x=round(self._clock() + ttl_s, 3),
            n=secrets.token_urlsafe(16),
            g=self._instance,
            a=approved,
            f=for_session,
            h=channel,
            v=approver,
            i=inner,
            c=carry or None,
        )
        payload = PREFIX + _b64(_encode(body))
        return f"{payload}.{_b64(self._mac(payload))}"

    def open(
        self, state: str, *, server: str, principal: str, method: str, subject: str, digest: str
    ) -> Sealed:
        """Verify a state for this call and use up its nonce; raise SealError when refused."""
        payload, dot, mac = state.rpartition(".")
        if not payload.startswith(PREFIX) or not dot:
            raise SealError("the requestState is not one the gateway issued")
        try:
            good = hmac.compare_digest(_unb64(mac), self._mac(payload))
            body = _decode(_unb64(payload[len(PREFIX) :])) if good else None
        except (ValueError, msgspec.DecodeError):
            body = None
        if body is None:
            raise SealError("the requestState was altered (its seal does not verify)")
        now = self._clock()
        if body.x < now:
            raise SealError("the approval round expired; ask again")
        if (body.s, body.p, body.m, body.t) != (server, principal, method, subject):
            raise SealError("the requestState was issued for another call")
        if body.g != self._instance:
            raise SealError("the requestState was issued by another gateway process; ask again")
        if body.d != digest:
            raise SealError("the arguments changed after the question was asked; ask again")
        if self._nonces is not None:
            if not self._nonces.use(body.n, body.x):
                raise SealError("the requestState was already used (replayed)")
            return body
        if body.n in self._used:
            raise SealError("the requestState was already used (replayed)")
        self._remember(body.n, body.x, now)
        return body

    def _mac(self, payload: str) -> bytes:
        return hmac.new(self._key, payload.encode("ascii"), hashlib.sha256).digest()

    def _remember(self, nonce: str, expiry: float, now: float) -> None:
        if len(self._used) >= _MAX_NONCES:
            self._used = {n: x for n, x in self._used.items() if x >= now}
            while len(self._used) >= _MAX_NONCES:  # all still live: drop the soonest to expire
                del self._used[min(self._used, key=self._used.__getitem__)]
        self._used[nonce] = expiry
