"""Who is calling ``portcullis serve``: bearer credentials in, a Principal or a challenge out.

A bearer token starting with ``pcl_`` is an API key (when ``serve.auth.api_keys``); anything
else is a JWT access token for the OAuth resource server. Credentials are read from the
``Authorization`` header only, never from the query string (URLs end up in logs). Failures
become RFC 6750 challenges that point at the RFC 9728 protected-resource metadata, which is how
MCP clients discover the authorization server.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import msgspec

from portcullis._exceptions import ConfigError
from portcullis.policy.compiled import ServeSettings
from portcullis.serve.keys import KEY_PREFIX, KeyStore
from portcullis.serve.oauth import OAuthVerifier
from portcullis.serve.types import AuthFailure, Principal

__all__ = [
    "WELL_KNOWN",
    "Authenticator",
    "metadata_path",
    "metadata_url",
    "protected_resource_metadata",
]

WELL_KNOWN = "/.well-known/oauth-protected-resource"
_RESOURCE_NAME = "Portcullis MCP gateway"
# RFC 6750 b64token, after the scheme and one or more spaces.
_BEARER = re.compile(r"[Bb][Ee][Aa][Rr][Ee][Rr] +([A-Za-z0-9\-._~+/]+=*)")
_MAX_HEADER = 16 * 1024
_MAX_DESCRIPTION = 200


def metadata_path(resource_path: str) -> str:
    """The RFC 9728 well-known path for a resource path: ``/mcp`` → ``/.well-known/…/mcp``."""
    path = "/" + resource_path.strip("/")
    return WELL_KNOWN if path == "/" else WELL_KNOWN + path


def metadata_url(resource_url: str) -> str:
    """The protected-resource metadata URL of ``resource_url`` (same origin, well-known path)."""
    parts = urlsplit(resource_url)
    if not parts.scheme or not parts.netloc:
        raise ConfigError(f"resource URL {resource_url!r} is not absolute")
    return f"{parts.scheme}://{parts.netloc}{metadata_path(parts.path)}"


def protected_resource_metadata(resource_url: str, settings: ServeSettings) -> dict[str, Any]:
    """The RFC 9728 metadata document for ``resource_url``."""
    doc: dict[str, Any] = {"resource": resource_url}
    if settings.oauth is not None:
        servers = settings.oauth.authorization_servers or (settings.oauth.issuer,)
        doc["authorization_servers"] = list(servers)
        if settings.oauth.required_scopes:
            doc["scopes_supported"] = list(settings.oauth.required_scopes)
    doc["bearer_methods_supported"] = ["header"]
    doc["resource_name"] = _RESOURCE_NAME
    return doc


def _quoted(value: str) -> str:
    """An RFC 9110 quoted-string: printable ASCII only (no CR/LF), quotes, backslashes escaped."""
    text = "".join(c if " " <= c <= "~" else " " for c in value)[:_MAX_DESCRIPTION]
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _authorization(headers: Mapping[str, str]) -> str | None:
    value = headers.get("authorization")
    if value is None:
        # A plain dict may keep the client's spelling; starlette's Headers already ignore case.
        for key, item in headers.items():
            if key.lower() == "authorization":
                return item
    return value


class Authenticator:
    """Turns a request's headers into a :class:`Principal`, or an :class:`AuthFailure`.

    ``resource_url`` is the gateway's MCP endpoint as clients reach it (e.g.
    ``https://gw.example/mcp``); challenges point at its metadata.
    """

    def __init__(
        self,
        settings: ServeSettings,
        *,
        keys: KeyStore | None,
        oauth: OAuthVerifier | None,
        resource_url: str,
    ) -> None:
        """Refuse a configuration that would let requests in without authentication."""
        if settings.api_keys and keys is None:
            raise ConfigError("serve.auth.api_keys is on but no key store was given")
        self._own_oauth = oauth is None and settings.oauth is not None
        if oauth is None and settings.oauth is not None:
            oauth = OAuthVerifier(settings.oauth)
        self.keys = keys if settings.api_keys else None
        self.oauth = oauth
        if self.keys is None and self.oauth is None:
            raise ConfigError(
                "serve refuses to start without authentication: enable serve.auth.api_keys "
                "or configure serve.auth.oauth"
            )
        self.settings = settings
        self.resource_url = resource_url
        self.metadata_url = metadata_url(resource_url)

    async def aclose(self) -> None:
        """Close the OAuth verifier's HTTP client when this Authenticator made the verifier."""
        if self._own_oauth and self.oauth is not None:
            await self.oauth.aclose()

    async def authenticate(self, headers: Mapping[str, str]) -> Principal:
        """The caller's principal; AuthFailure when credentials are missing, bad or too weak."""
        value = _authorization(headers)
        if value is None or not value.strip():
            raise AuthFailure(401, "authentication required", error=None)
        if len(value) > _MAX_HEADER:
            raise AuthFailure(401, "the Authorization header is too large", error="invalid_request")
        match = _BEARER.fullmatch(value.strip())
        if match is None:
            raise AuthFailure(
                401,
                "expected 'Authorization: Bearer <token>'",
                error="invalid_request",
            )
        token = match.group(1)
        if token.startswith(KEY_PREFIX):
            if self.keys is None:
                raise AuthFailure(401, "API keys are not accepted here")
            principal = self.keys.verify(token)
            if principal is None:
                raise AuthFailure(401, "unknown or revoked API key")
            return principal
        if self.oauth is None:
            raise AuthFailure(401, "only API keys are accepted here")
        return await self.oauth.verify(token)

    def challenge(
        self, failure: AuthFailure, resource_url: str | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        """Status, headers and JSON body answering ``failure`` (RFC 6750 §3, RFC 9728 §5.1).

        ``resource_url`` names the endpoint that was asked for when it is not the default one
        (``/servers/NAME/mcp``), so the metadata URL matches it.
        """
        where = metadata_url(resource_url) if resource_url else self.metadata_url
        params = [f"resource_metadata={_quoted(where)}"]
        if failure.error is not None:
            params.append(f"error={_quoted(failure.error)}")
            params.append(f"error_description={_quoted(failure.description)}")
        scope = failure.scope
        if not scope and failure.status == 401 and self.settings.oauth is not None:
            scope = self.settings.oauth.required_scopes
        if scope:
            params.append(f"scope={_quoted(' '.join(scope))}")
        headers = {
            "WWW-Authenticate": "Bearer " + ", ".join(params),
            "Content-Type": "application/json",
            "Cache-Control": "no-store",
        }
        body = msgspec.json.encode(
            {
                "error": failure.error or "unauthorized",
                "error_description": failure.description,
            }
        )
        return failure.status, headers, body
