"""The audit record's bytes: canonical JSON, the keyed MACs, timestamps and argument digests.

Three things are MACed with the install key, each over input that can never be mistaken for
another's: a record (canonical JSON, so it starts with ``{``), the anchor (a fixed prefix, then
canonical JSON) and an argument digest (another prefix). Without the prefixes a model could
choose tool arguments that *are* a record, and the gateway would write that record's valid MAC
into the log as the arguments' digest.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import time
from typing import Any, Final

import msgspec

from portcullis._exceptions import AuditError

__all__ = [
    "CHAIN_FIELDS",
    "RECOVERY_FIELD",
    "Signer",
    "canonical",
    "digest_args",
    "format_ts",
    "parse_record",
]

# Fields the log sets; a caller may not supply them.
CHAIN_FIELDS: Final = frozenset({"ts", "seq", "prev", "mac"})
# Set by a writer that found the log damaged when it (re)opened it; see docs/audit.md.
RECOVERY_FIELD: Final = "recovery"

_ANCHOR_DOMAIN: Final = b"portcullis audit anchor v1\n"
_ARGS_DOMAIN: Final = b"portcullis audit args v1\n"
_encode = msgspec.json.encode
_decode = msgspec.json.decode


def canonical(value: Any) -> bytes:
    """Return the canonical bytes of ``value``: JSON, keys sorted at every depth, no spaces."""
    try:
        return _encode(value, order="sorted")
    except (TypeError, ValueError, msgspec.EncodeError) as exc:
        # UnicodeEncodeError (a lone surrogate) is a ValueError; dicts with non-string keys and
        # unknown types are TypeErrors. All mean the record cannot be written faithfully.
        raise AuditError(f"audit record cannot be encoded as JSON: {exc}") from exc


class Signer:
    """HMAC-SHA256 with one key, prepared once: copying a keyed state saves ~0.4 µs a call."""

    __slots__ = ("_base",)

    def __init__(self, key: bytes) -> None:
        if not isinstance(key, bytes) or not key:
            raise AuditError("the audit key must be non-empty bytes")
        self._base = hmac.new(key, digestmod=hashlib.sha256)

    def record(self, body: bytes) -> str:
        """Return the hex MAC of a record's canonical bytes (without its ``mac``)."""
        state = self._base.copy()
        state.update(body)
        return state.hexdigest()

    def anchor(self, body: bytes) -> str:
        """Return the hex MAC of an anchor's canonical bytes (without its ``sig``)."""
        state = self._base.copy()
        state.update(_ANCHOR_DOMAIN)
        state.update(body)
        return state.hexdigest()

    def args(self, body: bytes) -> str:
        """Return the hex MAC of arguments' canonical bytes."""
        state = self._base.copy()
        state.update(_ARGS_DOMAIN)
        state.update(body)
        return state.hexdigest()


def digest_args(key: bytes, value: Any) -> str:
    """Return ``"hmac-sha256:<hex>"``, a keyed digest of ``value``'s canonical JSON.

    Keyed because a plain hash of a short argument (a path, a user id) is guessed by hashing
    candidates. Equal values give equal digests within one install (dict key order does not
    matter), so records can still be correlated. Raises AuditError when ``value`` is not JSON.
    """
    return "hmac-sha256:" + _signer(key).args(canonical(value))


@functools.lru_cache(maxsize=8)
def _signer(key: bytes) -> Signer:
    return Signer(key)


# (second, "YYYY-MM-DDTHH:MM:SS.") kept as one tuple so threads never pair one second's prefix
# with another's check.
_ts_cache: tuple[int, str] = (-1, "")


def format_ts(ns: int) -> str:
    """Format nanoseconds since the epoch as RFC 3339 UTC with microseconds."""
    global _ts_cache
    second, rest = divmod(ns, 1_000_000_000)
    cached_second, prefix = _ts_cache
    if second != cached_second:
        # gmtime and the date formatting are most of the cost; records arrive many per second.
        t = time.gmtime(second)
        prefix = (
            f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}"
            f"T{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}."
        )
        _ts_cache = (second, prefix)
    return f"{prefix}{rest // 1000:06d}Z"


def parse_record(line: bytes) -> dict[str, Any] | None:
    """Decode one line into a dict, or None when it is not a JSON object."""
    try:
        value = _decode(line)
    except (msgspec.DecodeError, ValueError, RecursionError):
        # RecursionError: a (tampered) line nested deeper than the decoder follows.
        return None
    return value if isinstance(value, dict) else None
