"""Small pure helpers the checks share: references, masking, hosts and URLs."""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import SplitResult, urlsplit, urlunsplit

# Findings mask evidence exactly as the detector does.
from portcullis.detect._validate import entropy, mask

__all__ = [
    "entropy",
    "host_of",
    "is_loopback",
    "is_reference",
    "mask",
    "redact_url",
    "scrub",
    "strip_references",
]

# Every way a client or Portcullis names a value held elsewhere: ${VAR}, ${env:X}, ${input:x},
# ${keyring:s/n}, $VAR, %VAR%, OpenCode's {env:X}, PowerShell's $env:X, 1Password op:// URIs.
_REFERENCE = re.compile(
    r"\$\{[^{}]*\}|\$env:[A-Za-z_][A-Za-z0-9_]*|\$[A-Za-z_][A-Za-z0-9_]*|%[A-Za-z_][A-Za-z0-9_]*%"
    r"|\{env:[^{}]*\}|\bop://\S+"
)


def is_reference(value: str) -> bool:
    """Whether ``value`` is wholly a reference to a secret kept elsewhere (nothing literal)."""
    return bool(value.strip()) and not _REFERENCE.sub("", value).strip()


def strip_references(value: str) -> str:
    """``value`` with its references blanked out, so only literal text is scanned."""
    return _REFERENCE.sub(" ", value)


def host_of(url: str) -> str:
    """The lower-case host of ``url`` (``""`` when it has none or does not parse)."""
    try:
        return (urlsplit(url).hostname or "").lower()
    except ValueError:
        return ""


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 and ``localhost`` names: traffic that never leaves the machine."""
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_private(host: str) -> bool:
    """An RFC 1918 / link-local / unique-local address (a LAN, not the internet)."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_private
    except ValueError:
        return host.endswith((".local", ".internal", ".lan", ".home.arpa"))


def redact_url(url: str) -> str:
    """``url`` with its password and query values masked, fit for evidence."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return mask(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user, sep, _pw = userinfo.partition(":")
        # A token sent as the user name is as secret as a password.
        shown_user = mask(user) if len(user) >= 16 else user
        netloc = f"{shown_user}{':****' if sep else ''}@{hostport}"
    query = "&".join(
        f"{k}={'…' if v else ''}" if sep else k
        for k, sep, v in (q.partition("=") for q in parts.query.split("&") if q)
    )
    return urlunsplit(SplitResult(parts.scheme, netloc, parts.path, query, ""))


def scrub(text: str) -> str:
    """``text`` with every secret the detector finds replaced by its masked form."""
    from portcullis.detect.secrets import scan_secrets

    out = text
    for f in sorted(scan_secrets(text), key=lambda f: f.start, reverse=True):
        out = out[: f.start] + f.evidence + out[f.end :]
    return out
