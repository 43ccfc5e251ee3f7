"""OAuth resource-server validation of JWT access tokens against a real local issuer."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from tests.serve.issuer import LocalIssuer, local_issuer

from portcullis._exceptions import ConfigError
from portcullis.policy.compiled import OAuthSettings
from portcullis.serve.oauth import OAuthVerifier
from portcullis.serve.types import AuthFailure

pytestmark = pytest.mark.anyio

AUD = "http://127.0.0.1:8787/mcp"


@pytest.fixture
async def make() -> AsyncIterator[Callable[..., OAuthVerifier]]:
    """Make verifiers; their HTTP clients are closed when the test ends."""
    made: list[OAuthVerifier] = []

    def factory(settings: OAuthSettings, **kwargs: Any) -> OAuthVerifier:
        verifier = OAuthVerifier(settings, **kwargs)
        made.append(verifier)
        return verifier

    yield factory
    for verifier in made:
        await verifier.aclose()


Make = Callable[..., OAuthVerifier]


class Clock:
    """A clock the test moves by hand (starts at the real time)."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _forge(header: dict[str, object], payload: dict[str, object], secret: bytes | None) -> str:
    head = _b64(json.dumps(header).encode()) + "." + _b64(json.dumps(payload).encode())
    if secret is None:
        return head + "."
    sig = hmac.new(secret, head.encode(), hashlib.sha256).digest()
    return head + "." + _b64(sig)


async def _refused(verifier: OAuthVerifier, token: str) -> AuthFailure:
    with pytest.raises(AuthFailure) as info:
        await verifier.verify(token)
    return info.value


async def test_valid_token(issuer: LocalIssuer, make: Make) -> None:
    """A well-formed RS256 token yields a Principal with groups, scopes and expiry."""
    verifier = make(issuer.settings(AUD))
    token = issuer.token(sub="alice", aud=AUD, scope="mcp:tools read", groups=["ops", "dev"])
    principal = await verifier.verify(token)
    assert principal.name == "alice"
    assert principal.kind == "oauth"
    assert principal.groups == ("ops", "dev")
    assert principal.scopes == ("mcp:tools", "read")
    assert principal.servers is None
    assert principal.expires is not None
    assert principal.expires > time.time()


async def test_ec_and_eddsa_keys(make: Make) -> None:
    """ES256 and EdDSA tokens verify; scp lists and space-separated groups are read."""
    with local_issuer("ES256") as issuer:
        ed = issuer.add_key("EdDSA")
        verifier = make(issuer.settings(AUD, groups_claim="roles"))
        p = await verifier.verify(issuer.token(aud=[AUD, "other"], claims={"roles": "a b"}))
        assert p.groups == ("a", "b")
        p = await verifier.verify(issuer.token(aud=AUD, kid=ed, claims={"scp": ["x", "y"]}))
        assert p.scopes == ("x", "y")


async def test_wrong_audience(issuer: LocalIssuer, make: Make) -> None:
    """A token for another resource is refused (RFC 8707 audience binding)."""
    verifier = make(issuer.settings(AUD))
    failure = await _refused(verifier, issuer.token(aud="http://127.0.0.1:9999/mcp"))
    assert failure.status == 401
    assert failure.error == "invalid_token"
    assert "audience" in failure.description
    assert (await _refused(verifier, issuer.token(aud=None))).status == 401


async def test_wrong_issuer(issuer: LocalIssuer, make: Make) -> None:
    """A token whose iss is not the configured issuer is refused."""
    verifier = make(issuer.settings(AUD))
    failure = await _refused(verifier, issuer.token(aud=AUD, iss="http://127.0.0.1:1/"))
    assert "issuer" in failure.description


async def test_expired_and_missing_exp(issuer: LocalIssuer, make: Make) -> None:
    """Expired tokens (past the leeway) and tokens without exp are refused."""
    verifier = make(issuer.settings(AUD, leeway_s=30.0))
    assert await verifier.verify(issuer.token(aud=AUD, exp_in=-10))  # inside the leeway
    failure = await _refused(verifier, issuer.token(aud=AUD, exp_in=-120))
    assert "expired" in failure.description
    failure = await _refused(verifier, issuer.token(aud=AUD, exp_in=None))
    assert "exp" in failure.description


async def test_not_yet_valid(issuer: LocalIssuer, make: Make) -> None:
    """A token whose nbf (or iat) lies beyond the leeway in the future is refused."""
    verifier = make(issuer.settings(AUD, leeway_s=5.0))
    assert "nbf" in (await _refused(verifier, issuer.token(aud=AUD, nbf_in=120))).description
    assert "iat" in (await _refused(verifier, issuer.token(aud=AUD, iat_in=120))).description


async def test_tampered_payload(issuer: LocalIssuer, make: Make) -> None:
    """Changing the payload of a signed token breaks its signature."""
    verifier = make(issuer.settings(AUD))
    head, payload, sig = issuer.token(sub="alice", aud=AUD).split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["sub"] = "admin"
    forged = f"{head}.{_b64(json.dumps(claims).encode())}.{sig}"
    assert "signature" in (await _refused(verifier, forged)).description


async def test_hs256_with_public_key_as_secret(issuer: LocalIssuer, make: Make) -> None:
    """The classic key confusion (HS256 keyed with the RSA public key) is refused."""
    verifier = make(issuer.settings(AUD))
    key = issuer.keys[issuer.default_kid]
    pem = key.private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    payload = {"iss": issuer.url, "aud": AUD, "sub": "mallory", "exp": int(time.time()) + 300}
    for secret in (pem, json.dumps(key.jwk).encode()):
        forged = _forge({"alg": "HS256", "typ": "JWT", "kid": key.kid}, payload, secret)
        failure = await _refused(verifier, forged)
        assert "HS256" in failure.description
    # Even a policy listing HS256 cannot turn it on.
    with pytest.raises(ConfigError):
        OAuthVerifier(issuer.settings(AUD, algorithms=("HS256",)))


async def test_alg_none(issuer: LocalIssuer, make: Make) -> None:
    """An unsigned token (alg none, any spelling) is refused."""
    verifier = make(issuer.settings(AUD))
    payload = {"iss": issuer.url, "aud": AUD, "sub": "mallory", "exp": int(time.time()) + 300}
    for alg in ("none", "None", "NONE"):
        failure = await _refused(verifier, _forge({"alg": alg}, payload, None))
        assert failure.error == "invalid_token"


async def test_algorithm_outside_policy(issuer: LocalIssuer, make: Make) -> None:
    """A valid RS256 token is refused when the policy accepts only ES256."""
    verifier = make(issuer.settings(AUD, algorithms=("ES256",)))
    assert "RS256" in (await _refused(verifier, issuer.token(aud=AUD))).description


async def test_key_type_must_fit_alg(issuer: LocalIssuer, make: Make) -> None:
    """A token claiming ES256 but naming the RSA key's kid finds no fitting key."""
    ec_kid = issuer.add_key("ES256", publish=False)
    verifier = make(issuer.settings(AUD))
    token = issuer.token(aud=AUD, kid=ec_kid, extra_headers={"kid": issuer.default_kid})
    failure = await _refused(verifier, token)
    assert "no key" in failure.description


async def test_foreign_jku_and_embedded_jwk_ignored(issuer: LocalIssuer, make: Make) -> None:
    """Keys named by jku/x5u or embedded as jwk are never fetched nor used."""
    with local_issuer() as attacker:
        verifier = make(issuer.settings(AUD))
        evil = attacker.keys[attacker.default_kid]
        token = attacker.token(
            aud=AUD,
            iss=issuer.url,
            extra_headers={"jku": attacker.jwks_url, "x5u": attacker.jwks_url, "jwk": evil.jwk},
        )
        await _refused(verifier, token)
        # Same kid as the real key, attacker's signature: the real key decides.
        token = attacker.token(
            aud=AUD,
            iss=issuer.url,
            extra_headers={"kid": issuer.default_kid, "jku": attacker.jwks_url},
        )
        assert "signature" in (await _refused(verifier, token)).description
        assert attacker.jwks_fetches == 0
        assert issuer.jwks_fetches >= 1


async def test_unknown_kid_refetch_is_rate_limited(issuer: LocalIssuer, make: Make) -> None:
    """An unknown kid triggers one refetch; more unknown kids within 30 s fetch nothing."""
    clock = Clock()
    verifier = make(issuer.settings(AUD), clock=clock)
    await verifier.verify(issuer.token(aud=AUD))
    assert issuer.jwks_fetches == 1
    clock.now += 31
    hidden = issuer.add_key(publish=False)
    await _refused(verifier, issuer.token(aud=AUD, kid=hidden))
    assert issuer.jwks_fetches == 2
    for _ in range(5):
        await _refused(verifier, issuer.token(aud=AUD, kid=hidden))
    assert issuer.jwks_fetches == 2
    # Many at once after the interval: one fetch, the others wait for it.
    clock.now += 31
    issuer.publish(hidden)
    results = await asyncio.gather(
        *(verifier.verify(issuer.token(aud=AUD, kid=hidden)) for _ in range(10))
    )
    assert {p.name for p in results} == {"alice"}
    assert issuer.jwks_fetches == 3


async def test_rotation(issuer: LocalIssuer, make: Make) -> None:
    """A newly published key is accepted after a refetch; a withdrawn one is refused after."""
    clock = Clock()
    verifier = make(issuer.settings(AUD), clock=clock)
    old = issuer.default_kid
    await verifier.verify(issuer.token(aud=AUD, kid=old))
    new = issuer.add_key("ES256")
    clock.now += 31
    assert (await verifier.verify(issuer.token(aud=AUD, kid=new))).name == "alice"
    issuer.remove_key(old)
    # Until the next refetch the cached key still works ...
    await verifier.verify(issuer.token(aud=AUD, kid=old))
    clock.now += 31
    await _refused(verifier, issuer.token(aud=AUD, kid=issuer.add_key(publish=False)))
    # ... after it, the withdrawn key is gone.
    await _refused(verifier, issuer.token(aud=AUD, kid=old))
    await verifier.verify(issuer.token(aud=AUD, kid=new))


async def test_keys_expire_after_max_age(issuer: LocalIssuer, make: Make) -> None:
    """Keys older than max_age_s are refetched before use, so withdrawal takes effect."""
    clock = Clock()
    verifier = make(issuer.settings(AUD), clock=clock, max_age_s=600)
    token = issuer.token(aud=AUD, exp_in=3600)
    await verifier.verify(token)
    issuer.remove_key(issuer.default_kid)
    clock.now += 601
    await _refused(verifier, token)
    assert issuer.jwks_fetches == 2


async def test_jwks_down_fails_closed(issuer: LocalIssuer, make: Make) -> None:
    """No keys fetched yet and the JWKS down: 401 saying the keys could not be fetched."""
    issuer.down = True
    verifier = make(issuer.settings(AUD), refetch_interval_s=0)
    failure = await _refused(verifier, issuer.token(aud=AUD))
    assert failure.status == 401
    assert "could not be fetched" in failure.description
    issuer.down = False
    assert (await verifier.verify(issuer.token(aud=AUD))).name == "alice"


async def test_jwks_down_keeps_known_keys(make: Make) -> None:
    """Once fetched, keys stay usable while the issuer is unreachable; new kids are refused."""
    clock = Clock()
    with local_issuer() as issuer:
        verifier = make(issuer.settings(AUD), clock=clock)
        token = issuer.token(aud=AUD)
        await verifier.verify(token)
        hidden_token = issuer.token(aud=AUD, kid=issuer.add_key())
    # The issuer is stopped now: connections are refused.
    clock.now += 31
    failure = await _refused(verifier, hidden_token)
    assert "could not be fetched" in failure.description
    assert (await verifier.verify(token)).name == "alice"


async def test_insufficient_scope(issuer: LocalIssuer, make: Make) -> None:
    """A valid token without the required scopes is a 403 naming them."""
    verifier = make(issuer.settings(AUD, required_scopes=("mcp:tools",)))
    failure = await _refused(verifier, issuer.token(aud=AUD, scope="read"))
    assert failure.status == 403
    assert failure.error == "insufficient_scope"
    assert failure.scope == ("mcp:tools",)
    assert await verifier.verify(issuer.token(aud=AUD, scope="read mcp:tools"))


async def test_principal_and_groups_claims_checked(issuer: LocalIssuer, make: Make) -> None:
    """A missing/empty principal claim or a malformed groups claim is refused."""
    verifier = make(issuer.settings(AUD))
    assert "sub" in (await _refused(verifier, issuer.token(sub=None, aud=AUD))).description
    assert "sub" in (await _refused(verifier, issuer.token(sub=" ", aud=AUD))).description
    bad_groups = issuer.token(aud=AUD, claims={"groups": [1, 2]})
    assert "groups" in (await _refused(verifier, bad_groups)).description
    email = make(issuer.settings(AUD, principal_claim="email"))
    p = await email.verify(issuer.token(aud=AUD, claims={"email": "a@example.com"}))
    assert p.name == "a@example.com"


async def test_garbage_tokens(issuer: LocalIssuer, make: Make) -> None:
    """Tokens that are not JWTs, or are huge, are refused without fetching keys."""
    verifier = make(issuer.settings(AUD))
    for token in ("abc", "a.b.c", "x" * 20000, ""):
        assert (await _refused(verifier, token)).error == "invalid_token"
    assert issuer.jwks_fetches == 0


def test_plain_http_jwks_only_on_loopback() -> None:
    """A JWKS over plain http to a remote host is a configuration error."""
    settings = OAuthSettings(
        issuer="https://id.example", audience=AUD, jwks_url="http://id.example/jwks"
    )
    with pytest.raises(ConfigError, match="https"):
        OAuthVerifier(settings)


async def test_concurrent_callers_share_one_fetch(issuer: LocalIssuer, make: Make) -> None:
    """Callers arriving while a fetch is in flight wait for it instead of fetching again."""
    verifier = make(issuer.settings(AUD), refetch_interval_s=0)
    token = issuer.token(aud=AUD)
    results = await asyncio.gather(*(verifier.verify(token) for _ in range(10)))
    assert len(results) == 10
    assert issuer.jwks_fetches == 1


async def test_jwks_limits(issuer: LocalIssuer, make: Make) -> None:
    """A JWKS that is too large, not JSON, or a redirect elsewhere is not used."""
    with local_issuer() as attacker:
        attacker_key = attacker.token(aud=AUD, iss=issuer.url)
        for body, redirect in (
            (b'{"keys": [], "pad": "' + b"x" * (2 << 20) + b'"}', None),
            (b"<html>", None),
            (b'{"no": "keys"}', None),
            (None, attacker.jwks_url),
        ):
            issuer.jwks_body, issuer.jwks_redirect = body, redirect
            verifier = make(issuer.settings(AUD))
            failure = await _refused(verifier, attacker_key)
            assert "could not be fetched" in failure.description
        assert attacker.jwks_fetches == 0
    issuer.jwks_body = issuer.jwks_redirect = None
    assert await make(issuer.settings(AUD)).verify(issuer.token(aud=AUD))
