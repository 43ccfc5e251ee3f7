"""OAuth 2.1 resource server: validate JWT access tokens against the issuer's published keys.

The accepted algorithms come from the policy only (a token's ``alg`` never widens them; ``none``
and HMAC are always refused), and keys come only from ``jwks_url``: the ``jku``, ``x5u``,
``jwk`` and ``x5c`` headers are ignored, so a token cannot bring its own key. An unknown ``kid``
causes one refetch of the key set, rate-limited so a stream of made-up kids cannot hammer the
issuer. When the issuer cannot be reached the keys fetched before stay in use; without them,
every token is refused (fail closed).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import jwt
import msgspec

from portcullis._exceptions import ConfigError
from portcullis.policy.compiled import OAuthSettings
from portcullis.serve.types import AuthFailure, Principal

if TYPE_CHECKING:
    import httpx2

__all__ = ["OAuthVerifier"]

log = logging.getLogger(__name__)

# alg -> (kty, crv or None). Anything else (none, HS*, unknown) is never accepted.
_KEY_TYPES: dict[str, tuple[str, str | None]] = {
    "RS256": ("RSA", None),
    "RS384": ("RSA", None),
    "RS512": ("RSA", None),
    "PS256": ("RSA", None),
    "PS384": ("RSA", None),
    "PS512": ("RSA", None),
    "ES256": ("EC", "P-256"),
    "ES384": ("EC", "P-384"),
    "ES512": ("EC", "P-521"),
    "EdDSA": ("OKP", None),
}
_OKP_CURVES = frozenset({"Ed25519", "Ed448"})
_MAX_TOKEN_BYTES = 16 * 1024
_MAX_JWKS_BYTES = 1024 * 1024
_MAX_KEYS = 100
_REFETCH_S = 30.0
_MAX_AGE_S = 3600.0
_FETCH_TIMEOUT_S = 10.0


def _fail(description: str) -> AuthFailure:
    return AuthFailure(401, description, error="invalid_token")


def _is_loopback(host: str | None) -> bool:
    if host is None:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _number(claims: Mapping[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _fail(f"the token's {name} claim is not a number")
    return float(value)


def _strings(value: Any, what: str) -> tuple[str, ...]:
    """A list of strings, or one space-separated string, as a tuple."""
    if value is None:
        return ()
    if isinstance(value, str):
        return tuple(value.split())
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(v for v in value if v)
    raise _fail(f"the token's {what} claim is neither a string nor a list of strings")


def _fits(jwk: Mapping[str, Any], alg: str) -> bool:
    """May this JWK verify a signature made with ``alg``? (kty, crv, alg, use, key_ops)."""
    kty, crv = _KEY_TYPES[alg]
    if jwk.get("kty") != kty:
        return False
    if crv is not None and jwk.get("crv") != crv:
        return False
    if kty == "OKP" and jwk.get("crv") not in _OKP_CURVES:
        return False
    if "alg" in jwk and jwk["alg"] != alg:
        return False
    if "use" in jwk and jwk["use"] != "sig":
        return False
    ops = jwk.get("key_ops")
    return ops is None or (isinstance(ops, list) and "verify" in ops)


class OAuthVerifier:
    """Validates bearer JWTs for one issuer and audience (``serve.auth.oauth``).

    ``client`` is used for JWKS fetches when given (and then not closed here); otherwise one
    is made on first use with TLS verification, no redirects and a timeout. ``clock`` gives the
    time used for ``exp``/``nbf``/``iat`` and for the refetch rate limit.
    """

    def __init__(
        self,
        settings: OAuthSettings,
        *,
        client: httpx2.AsyncClient | None = None,
        clock: Callable[[], float] = time.time,
        refetch_interval_s: float = _REFETCH_S,
        max_age_s: float = _MAX_AGE_S,
        fetch_timeout_s: float = _FETCH_TIMEOUT_S,
        max_jwks_bytes: int = _MAX_JWKS_BYTES,
    ) -> None:
        """Check the settings; nothing is fetched until the first token arrives."""
        url = urlsplit(settings.jwks_url)
        if url.scheme != "https" and not (url.scheme == "http" and _is_loopback(url.hostname)):
            raise ConfigError(
                f"serve.auth.oauth.jwks_url {settings.jwks_url!r} must use https "
                "(plain http only to a loopback address)"
            )
        self.algorithms = tuple(a for a in settings.algorithms if a in _KEY_TYPES)
        if not self.algorithms:
            raise ConfigError(
                "serve.auth.oauth.algorithms names no asymmetric signature algorithm "
                f"(supported: {', '.join(_KEY_TYPES)})"
            )
        self.settings = settings
        self._client = client
        self._own_client = client is None
        self._clock = clock
        self._refetch_s = refetch_interval_s
        self._max_age_s = max_age_s
        self._timeout_s = fetch_timeout_s
        self._max_bytes = max_jwks_bytes
        self._keys: list[dict[str, Any]] | None = None
        self._fetched_at: float | None = None  # last successful fetch
        self._attempted_at: float | None = None  # last attempt, successful or not
        self._generation = 0  # bumped when an attempt ends: waiters see a fetch happened
        self._last_error: str | None = None
        self._lock = asyncio.Lock()
        self.fetches = 0  # attempts made (for metrics and tests)

    async def aclose(self) -> None:
        """Close the HTTP client when this verifier made it."""
        if self._own_client and self._client is not None:
            await self._client.aclose()
            self._client = None

    # -- the key set ---------------------------------------------------------------------

    async def _fetch(self) -> list[dict[str, Any]]:
        import httpx2

        if self._client is None:
            self._client = httpx2.AsyncClient(
                timeout=httpx2.Timeout(self._timeout_s),
                follow_redirects=False,
                verify=True,
                trust_env=False,
            )
        url = self.settings.jwks_url
        try:
            async with asyncio.timeout(self._timeout_s):
                async with self._client.stream(
                    "GET", url, headers={"Accept": "application/json"}
                ) as resp:
                    if resp.status_code != 200:
                        raise ValueError(f"HTTP {resp.status_code}")
                    body = bytearray()
                    async for chunk in resp.aiter_bytes():
                        body += chunk
                        if len(body) > self._max_bytes:
                            raise ValueError(f"larger than {self._max_bytes} bytes")
        except TimeoutError:  # before OSError, which it is a kind of
            raise ValueError(f"no answer in {self._timeout_s:g} s") from None
        except (httpx2.HTTPError, OSError) as exc:
            raise ValueError(type(exc).__name__) from None
        try:
            doc = msgspec.json.decode(bytes(body))
        except msgspec.DecodeError:
            raise ValueError("not JSON") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list):
            raise ValueError("not a JWK set (no keys list)")
        keys = [k for k in doc["keys"] if isinstance(k, dict)]
        return keys[:_MAX_KEYS]

    async def _refresh(self, seen: int) -> None:
        """Fetch the key set unless someone did since generation ``seen`` or it is too soon."""
        async with self._lock:
            if self._generation != seen:
                return  # a fetch finished while this caller waited: use its result
            now = self._clock()
            if self._attempted_at is not None and now - self._attempted_at < self._refetch_s:
                return
            self._attempted_at = now
            self.fetches += 1
            try:
                keys = await self._fetch()
            except ValueError as exc:
                self._last_error = str(exc)
            except Exception as exc:  # fail closed (401), never a 500, on anything unexpected
                self._last_error = f"unexpected {type(exc).__name__}"
            else:
                self._keys, self._fetched_at, self._last_error = keys, self._clock(), None
            finally:
                self._generation += 1
            if self._last_error is not None:
                log.warning(
                    "cannot fetch the JWKS %s: %s", self.settings.jwks_url, self._last_error
                )

    def _candidates(self, kid: str | None, alg: str) -> list[dict[str, Any]]:
        keys = self._keys or []
        if kid is not None:
            keys = [k for k in keys if k.get("kid") == kid]
        return [k for k in keys if _fits(k, alg)]

    async def _keys_for(self, kid: str | None, alg: str) -> list[jwt.PyJWK]:
        stale = self._fetched_at is None or self._clock() - self._fetched_at > self._max_age_s
        if stale:
            await self._refresh(self._generation)
        found = self._candidates(kid, alg)
        if not found and not stale:
            # An unknown kid may be a key the issuer published since: look once more.
            await self._refresh(self._generation)
            found = self._candidates(kid, alg)
        if not found:
            if self._keys is None or self._last_error is not None:
                raise _fail(
                    "the issuer's keys could not be fetched; tokens cannot be checked "
                    f"(refused): {self._last_error or 'not fetched yet'}"
                )
            which = f"kid {kid!r}" if kid is not None else "no kid"
            raise _fail(f"no key of the issuer fits the token ({which}, alg {alg})")
        out: list[jwt.PyJWK] = []
        for jwk in found:
            try:
                out.append(jwt.PyJWK(jwk, algorithm=alg))
            except jwt.PyJWTError:
                continue
        if not out:
            raise _fail("the issuer's key for this token is unusable")
        return out

    # -- tokens --------------------------------------------------------------------------

    def _header(self, token: str) -> tuple[str, str | None]:
        if len(token) > _MAX_TOKEN_BYTES:
            raise _fail("the token is too large")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise _fail("the token is not a well-formed JWT") from None
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self.algorithms:
            shown = alg if isinstance(alg, str) and len(alg) < 20 else "?"
            raise _fail(f"signature algorithm {shown!r} is not accepted")
        if "crit" in header:
            raise _fail("the token has critical header extensions this server does not know")
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise _fail("the token's kid is not a string")
        # jku, x5u, jwk and x5c are deliberately never looked at: keys come from jwks_url only.
        return alg, kid

    async def verify(self, token: str) -> Principal:
        """The principal of a valid token; AuthFailure (401 invalid_token, or 403) otherwise."""
        alg, kid = self._header(token)
        claims: dict[str, Any] | None = None
        for key in await self._keys_for(kid, alg):
            try:
                claims = jwt.decode(
                    token,
                    key=key.key,
                    algorithms=[alg],
                    options={
                        "verify_signature": True,
                        "verify_exp": False,
                        "verify_nbf": False,
                        "verify_iat": False,
                        "verify_aud": False,
                        "verify_iss": False,
                        "verify_sub": False,
                        "verify_jti": False,
                    },
                )
                break
            except jwt.InvalidSignatureError:
                continue
            except jwt.PyJWTError:
                raise _fail("the token is not a well-formed JWT") from None
        if claims is None:
            raise _fail("the token's signature is not valid")
        return self._principal(claims)

    def _principal(self, claims: Mapping[str, Any]) -> Principal:
        s = self.settings
        now = self._clock()
        exp = _number(claims, "exp")
        if exp is None:
            raise _fail("the token has no expiry (exp)")
        if now > exp + s.leeway_s:
            raise _fail("the token has expired")
        nbf = _number(claims, "nbf")
        if nbf is not None and now + s.leeway_s < nbf:
            raise _fail("the token is not valid yet (nbf)")
        iat = _number(claims, "iat")
        if iat is not None and now + s.leeway_s < iat:
            raise _fail("the token was issued in the future (iat)")
        if claims.get("iss") != s.issuer:
            raise _fail("the token comes from another issuer")
        aud = claims.get("aud")
        audiences = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
        if s.audience not in audiences:
            raise _fail(f"the token is not meant for this resource (audience {s.audience})")
        name = claims.get(s.principal_claim)
        if not isinstance(name, str) or not name.strip():
            raise _fail(f"the token's {s.principal_claim} claim is missing or not a string")
        groups = _strings(claims.get(s.groups_claim), s.groups_claim)
        scope = claims.get("scope")
        scopes = _strings(scope if scope is not None else claims.get("scp"), "scope")
        missing = [r for r in s.required_scopes if r not in scopes]
        if missing:
            raise AuthFailure(
                403,
                f"the token lacks the scope {' '.join(missing)}",
                error="insufficient_scope",
                scope=s.required_scopes,
            )
        return Principal(name=name, kind="oauth", groups=groups, scopes=scopes, expires=exp)
