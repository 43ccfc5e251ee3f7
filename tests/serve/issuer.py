"""A local OAuth issuer for tests: real keys, a real JWKS endpoint, tokens on demand.

Usage::

    with local_issuer() as issuer:            # one RS256 key published
        settings = issuer.settings(audience="http://127.0.0.1:8787/mcp")
        token = issuer.token(aud="http://127.0.0.1:8787/mcp", scope="mcp")
        kid = issuer.add_key("ES256")         # rotation: publish a new key …
        issuer.remove_key(kid)                # … or withdraw one (it can still sign)

The issuer serves ``/jwks`` and ``/.well-known/oauth-authorization-server`` with uvicorn in a
background thread on 127.0.0.1 (a free port), counts JWKS fetches (``jwks_fetches``) and can
pretend to be down (``down = True``: 503), serve odd bodies (``jwks_body``) or redirect
(``jwks_redirect``).
"""

from __future__ import annotations

import secrets
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import jwt
import uvicorn
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from portcullis.policy.compiled import OAuthSettings

__all__ = ["IssuerKey", "LocalIssuer", "local_issuer"]

_START_TIMEOUT_S = 10.0


@dataclass
class IssuerKey:
    """One signing key: its private half signs, its public JWK may be published."""

    kid: str
    alg: str
    private: Any
    jwk: dict[str, Any]
    published: bool = True


def _make_key(alg: str, kid: str) -> IssuerKey:
    private: Any
    if alg.startswith(("RS", "PS")):
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        jwk = RSAAlgorithm.to_jwk(private.public_key(), as_dict=True)
    elif alg.startswith("ES"):
        curve = {"ES256": ec.SECP256R1(), "ES384": ec.SECP384R1(), "ES512": ec.SECP521R1()}[alg]
        private = ec.generate_private_key(curve)
        jwk = ECAlgorithm.to_jwk(private.public_key(), as_dict=True)
    elif alg == "EdDSA":
        private = ed25519.Ed25519PrivateKey.generate()
        jwk = OKPAlgorithm.to_jwk(private.public_key(), as_dict=True)
    else:
        raise ValueError(f"the local issuer cannot make {alg} keys")
    jwk.update({"kid": kid, "alg": alg, "use": "sig"})
    return IssuerKey(kid=kid, alg=alg, private=private, jwk=jwk)


class LocalIssuer:
    """An OAuth authorization server just sufficient for resource-server tests."""

    def __init__(self, alg: str = "RS256") -> None:
        """Make one key of ``alg``; the server starts with :meth:`start`."""
        self.keys: dict[str, IssuerKey] = {}
        self.jwks_fetches = 0
        self.down = False
        self.jwks_body: bytes | None = None  # served instead of the JWKS when set
        self.jwks_redirect: str | None = None  # answer /jwks with a 302 to this URL when set
        self.port = 0
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.default_kid = self.add_key(alg)

    # -- the HTTP side -------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The issuer identifier (``iss``), e.g. ``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def jwks_url(self) -> str:
        """Where the published keys are served."""
        return f"{self.url}/jwks"

    def jwks(self) -> dict[str, Any]:
        """The JWK set as served now."""
        return {"keys": [dict(k.jwk) for k in self.keys.values() if k.published]}

    async def _jwks(self, request: Request) -> Response:
        self.jwks_fetches += 1
        if self.down:
            return Response("unavailable", status_code=503)
        if self.jwks_redirect is not None:
            return Response(status_code=302, headers={"Location": self.jwks_redirect})
        if self.jwks_body is not None:
            return Response(self.jwks_body, media_type="application/json")
        return JSONResponse(self.jwks())

    async def _metadata(self, request: Request) -> Response:
        return JSONResponse(
            {
                "issuer": self.url,
                "jwks_uri": self.jwks_url,
                "authorization_endpoint": f"{self.url}/authorize",
                "token_endpoint": f"{self.url}/token",
                "response_types_supported": ["code"],
                "code_challenge_methods_supported": ["S256"],
            }
        )

    def start(self) -> None:
        """Serve on a free 127.0.0.1 port in a background thread; wait until it listens."""
        app = Starlette(
            routes=[
                Route("/jwks", self._jwks),
                Route("/.well-known/oauth-authorization-server", self._metadata),
            ]
        )
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            app, log_level="warning", lifespan="off", ws="none", http="h11", access_log=False
        )
        self._server = server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="local-issuer", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + _START_TIMEOUT_S
        while not server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the local issuer did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        """Stop serving (idempotent)."""
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=_START_TIMEOUT_S)
        self._server = self._thread = None

    # -- keys and tokens -----------------------------------------------------------------

    def add_key(self, alg: str = "RS256", *, kid: str | None = None, publish: bool = True) -> str:
        """Make a key and (unless ``publish=False``) publish it; return its kid."""
        kid = kid or f"{alg.lower()}-{secrets.token_hex(4)}"
        key = _make_key(alg, kid)
        key.published = publish
        self.keys[kid] = key
        return kid

    def publish(self, kid: str) -> None:
        """Publish a key made with ``publish=False``."""
        self.keys[kid].published = True

    def remove_key(self, kid: str) -> None:
        """Withdraw a key from the JWKS (it can still sign tokens, as a leaked key would)."""
        self.keys[kid].published = False

    def settings(self, audience: str, **overrides: Any) -> OAuthSettings:
        """``OAuthSettings`` trusting this issuer for ``audience``."""
        values: dict[str, Any] = {
            "issuer": self.url,
            "audience": audience,
            "jwks_url": self.jwks_url,
        }
        values.update(overrides)
        return OAuthSettings(**values)

    def token(
        self,
        sub: str | None = "alice",
        aud: str | Sequence[str] | None = None,
        *,
        exp_in: float | None = 300,
        nbf_in: float | None = None,
        iat_in: float | None = 0,
        scope: str | None = None,
        groups: Sequence[str] | None = None,
        kid: str | None = None,
        alg: str | None = None,
        iss: str | None = None,
        claims: dict[str, Any] | None = None,
        extra_headers: dict[str, Any] | None = None,
        include_kid: bool = True,
        now: float | None = None,
    ) -> str:
        """A signed access token; ``None`` leaves a claim out. Times are relative to ``now``."""
        key = self.keys[kid or self.default_kid]
        t = time.time() if now is None else now
        payload: dict[str, Any] = {"iss": iss if iss is not None else self.url}
        if sub is not None:
            payload["sub"] = sub
        if aud is not None:
            payload["aud"] = aud if isinstance(aud, str) else list(aud)
        if exp_in is not None:
            payload["exp"] = int(t + exp_in)
        if nbf_in is not None:
            payload["nbf"] = int(t + nbf_in)
        if iat_in is not None:
            payload["iat"] = int(t + iat_in)
        if scope is not None:
            payload["scope"] = scope
        if groups is not None:
            payload["groups"] = list(groups)
        payload.update(claims or {})
        headers: dict[str, Any] = {"kid": key.kid} if include_kid else {}
        headers.update(extra_headers or {})
        return jwt.encode(payload, key.private, algorithm=alg or key.alg, headers=headers)


@contextmanager
def local_issuer(alg: str = "RS256") -> Iterator[LocalIssuer]:
    """A running :class:`LocalIssuer` with one published ``alg`` key, stopped afterwards."""
    issuer = LocalIssuer(alg)
    issuer.start()
    try:
        yield issuer
    finally:
        issuer.stop()
