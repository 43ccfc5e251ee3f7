"""Authenticator: bearer API keys and JWTs, RFC 6750 challenges and RFC 9728 metadata."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from tests.serve.issuer import LocalIssuer

from portcullis._exceptions import ConfigError
from portcullis.policy.compiled import ServeSettings
from portcullis.serve.auth import (
    Authenticator,
    metadata_path,
    metadata_url,
    protected_resource_metadata,
)
from portcullis.serve.keys import KeyStore
from portcullis.serve.oauth import OAuthVerifier
from portcullis.serve.types import AuthFailure, Principal

pytestmark = pytest.mark.anyio

RESOURCE = "http://127.0.0.1:8787/mcp"
METADATA = "http://127.0.0.1:8787/.well-known/oauth-protected-resource/mcp"


@pytest.fixture
def keys(tmp_path: Path) -> KeyStore:
    return KeyStore.load(tmp_path / "keys.json")


@pytest.fixture
async def auth(issuer: LocalIssuer, keys: KeyStore) -> AsyncIterator[Authenticator]:
    """Both methods on; the token must carry mcp:tools."""
    settings = ServeSettings(
        api_keys=True, oauth=issuer.settings(RESOURCE, required_scopes=("mcp:tools",))
    )
    assert settings.oauth is not None
    oauth = OAuthVerifier(settings.oauth)
    yield Authenticator(settings, keys=keys, oauth=oauth, resource_url=RESOURCE)
    await oauth.aclose()


async def _fails(auth: Authenticator, headers: dict[str, str]) -> AuthFailure:
    with pytest.raises(AuthFailure) as info:
        await auth.authenticate(headers)
    return info.value


async def test_api_key(auth: Authenticator, keys: KeyStore) -> None:
    """A bearer API key authenticates as its name, scope included."""
    key = keys.create("ci", ["files"])
    principal = await auth.authenticate({"authorization": f"Bearer {key}"})
    assert principal == Principal("ci", "key", servers=("files",))
    # Header names and the scheme are case-insensitive, even in a plain dict.
    assert await auth.authenticate({"Authorization": f"bearer  {key}"}) == principal


async def test_jwt(auth: Authenticator, issuer: LocalIssuer) -> None:
    """A valid JWT authenticates as its subject."""
    token = issuer.token(sub="alice", aud=RESOURCE, scope="mcp:tools")
    principal = await auth.authenticate({"authorization": f"Bearer {token}"})
    assert (principal.name, principal.kind) == ("alice", "oauth")


async def test_no_credentials_challenge(auth: Authenticator) -> None:
    """No Authorization header: 401 pointing at the resource metadata, with no error code."""
    failure = await _fails(auth, {"accept": "application/json"})
    assert (failure.status, failure.error) == (401, None)
    status, headers, body = auth.challenge(failure)
    assert status == 401
    challenge = headers["WWW-Authenticate"]
    assert challenge.startswith("Bearer ")
    assert f'resource_metadata="{METADATA}"' in challenge
    assert "error=" not in challenge
    assert 'scope="mcp:tools"' in challenge
    assert json.loads(body)["error_description"] == "authentication required"


@pytest.mark.parametrize(
    "value", ["Basic dXNlcjpwYXNz", "Bearer", "Bearer a b", "Bearer tok\u00e9n", "Token abc"]
)
async def test_malformed_header(auth: Authenticator, value: str) -> None:
    """A header that is not 'Bearer <b64token>' is 401 invalid_request."""
    failure = await _fails(auth, {"authorization": value})
    assert (failure.status, failure.error) == (401, "invalid_request")
    _, headers, _ = auth.challenge(failure)
    assert 'error="invalid_request"' in headers["WWW-Authenticate"]


async def test_bad_credentials(auth: Authenticator, issuer: LocalIssuer, keys: KeyStore) -> None:
    """Unknown API keys and invalid JWTs are 401 invalid_token with a description."""
    key = keys.create("ci")
    keys.revoke("ci")
    failure = await _fails(auth, {"authorization": f"Bearer {key}"})
    assert (failure.status, failure.error) == (401, "invalid_token")
    token = issuer.token(aud="http://elsewhere/mcp", scope="mcp:tools")
    failure = await _fails(auth, {"authorization": f"Bearer {token}"})
    status, headers, body = auth.challenge(failure)
    assert status == 401
    assert 'error="invalid_token"' in headers["WWW-Authenticate"]
    assert "audience" in json.loads(body)["error_description"]


async def test_insufficient_scope_challenge(auth: Authenticator, issuer: LocalIssuer) -> None:
    """A token without the required scope is 403 insufficient_scope naming the scope."""
    token = issuer.token(aud=RESOURCE, scope="read")
    failure = await _fails(auth, {"authorization": f"Bearer {token}"})
    status, headers, body = auth.challenge(failure)
    assert status == 403
    challenge = headers["WWW-Authenticate"]
    assert 'error="insufficient_scope"' in challenge
    assert 'scope="mcp:tools"' in challenge
    assert json.loads(body)["error"] == "insufficient_scope"


async def test_challenge_escapes_description(auth: Authenticator) -> None:
    """Descriptions are quote-escaped, and CR/LF or non-ASCII never reach the header."""
    failure = AuthFailure(401, 'bad "token"\r\nSet-Cookie: x=1 \\ é')
    _, headers, body = auth.challenge(failure)
    challenge = headers["WWW-Authenticate"]
    assert "\r" not in challenge
    assert "\n" not in challenge
    assert challenge.isascii()
    assert 'error_description="bad \\"token\\"  Set-Cookie: x=1 \\\\  "' in challenge
    assert json.loads(body)["error_description"] == failure.description


async def test_challenge_for_another_resource(auth: Authenticator) -> None:
    """A per-server endpoint's challenge points at that endpoint's metadata."""
    failure = AuthFailure(401, "authentication required", error=None)
    _, headers, _ = auth.challenge(failure, "http://127.0.0.1:8787/servers/files/mcp")
    expected = "http://127.0.0.1:8787/.well-known/oauth-protected-resource/servers/files/mcp"
    assert f'resource_metadata="{expected}"' in headers["WWW-Authenticate"]


async def test_api_keys_only(keys: KeyStore) -> None:
    """With API keys only, a JWT-looking token is refused without any fetch."""
    auth = Authenticator(ServeSettings(api_keys=True), keys=keys, oauth=None, resource_url=RESOURCE)
    failure = await _fails(auth, {"authorization": "Bearer eyJhbGciOi.eyJzdWIi.sig"})
    assert failure.error == "invalid_token"
    assert "API keys" in failure.description
    _, headers, _ = auth.challenge(failure)
    assert "scope=" not in headers["WWW-Authenticate"]


async def test_oauth_only_refuses_keys(issuer: LocalIssuer, keys: KeyStore) -> None:
    """With api_keys off, even a valid API key is refused."""
    key = keys.create("ci")
    settings = ServeSettings(api_keys=False, oauth=issuer.settings(RESOURCE))
    assert settings.oauth is not None
    oauth = OAuthVerifier(settings.oauth)
    auth = Authenticator(settings, keys=keys, oauth=oauth, resource_url=RESOURCE)
    failure = await _fails(auth, {"authorization": f"Bearer {key}"})
    assert "not accepted" in failure.description
    await oauth.aclose()


def test_refuses_to_start_without_authentication(keys: KeyStore) -> None:
    """Neither API keys nor OAuth: constructing the Authenticator is a ConfigError."""
    with pytest.raises(ConfigError, match="without authentication"):
        Authenticator(ServeSettings(api_keys=False), keys=None, oauth=None, resource_url=RESOURCE)
    with pytest.raises(ConfigError, match="without authentication"):
        Authenticator(ServeSettings(api_keys=False), keys=keys, oauth=None, resource_url=RESOURCE)


def test_metadata_paths() -> None:
    """The well-known metadata path inserts the resource path after the well-known prefix."""
    assert metadata_path("/mcp") == "/.well-known/oauth-protected-resource/mcp"
    assert (
        metadata_path("/servers/db/mcp/") == "/.well-known/oauth-protected-resource/servers/db/mcp"
    )
    assert metadata_path("/") == "/.well-known/oauth-protected-resource"
    assert metadata_path("") == "/.well-known/oauth-protected-resource"
    assert metadata_url(RESOURCE) == METADATA
    with pytest.raises(ConfigError):
        metadata_url("/mcp")


def test_protected_resource_metadata(issuer: LocalIssuer) -> None:
    """The RFC 9728 document names the resource, its authorization servers and scopes."""
    settings = ServeSettings(oauth=issuer.settings(RESOURCE, required_scopes=("mcp:tools",)))
    doc = protected_resource_metadata(RESOURCE, settings)
    assert doc["resource"] == RESOURCE
    assert doc["authorization_servers"] == [issuer.url]
    assert doc["bearer_methods_supported"] == ["header"]
    assert doc["scopes_supported"] == ["mcp:tools"]
    assert doc["resource_name"]
    listed = ServeSettings(
        oauth=issuer.settings(RESOURCE, authorization_servers=("https://as.example",))
    )
    assert protected_resource_metadata(RESOURCE, listed)["authorization_servers"] == [
        "https://as.example"
    ]
    keys_only = protected_resource_metadata(RESOURCE, ServeSettings())
    assert "authorization_servers" not in keys_only
    assert "scopes_supported" not in keys_only


async def test_builds_its_own_verifier(issuer: LocalIssuer) -> None:
    """Given OAuth settings but no verifier, the Authenticator makes (and closes) one."""
    settings = ServeSettings(api_keys=False, oauth=issuer.settings(RESOURCE))
    auth = Authenticator(settings, keys=None, oauth=None, resource_url=RESOURCE)
    token = issuer.token(sub="bob", aud=RESOURCE)
    assert (await auth.authenticate({"authorization": f"Bearer {token}"})).name == "bob"
    await auth.aclose()
